# Kafka faults on the 3-broker fleet with three clusters publishing at once
# into ONE data topic of this test's own, each under continuous load
# (committed and rolled-back transactions), their producers with a short
# transaction.timeout.ms (10 s):
#
# 1. kill -9 of the broker hosting a cluster's transaction coordinator
#    (the leader of __transaction_state partition
#    abs(transactional.id.hashCode()) % n, checked against the broker's own
#    log), preferring one that also
#    coordinates other clusters' transactions or checkpoint groups
#    (guid-ckpt-<transactional.id> in __consumer_offsets, which
#    send_offsets_to_transaction talks to); started again after.
# 2. kill -STOP of the broker leading the data partition for longer than
#    the transaction timeout plus the coordinators' abort scan
#    (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by
#    default): the one partition every cluster writes to, so every
#    cluster's open transaction hangs on it, its produce requests get no
#    answer (a paused broker keeps its connections open: nothing fails
#    fast), the coordinators abort the timed-out transactions and must write
#    their markers through the partition's next leader, and the paused
#    broker, once continued, is a stale leader; then kill -CONT.
# 3. what either fault can do to a commit, made certain: a publisher held
#    before its commit (guid.publisher_test_pause) until the coordinator
#    rolls its transaction back for the timeout and bumps its epoch; the
#    fence that follows must not be reported as another producer with the
#    transactional.id (there is none), and the rows are published once.
#
# After each: the read_committed topic equals exactly the union of every
# cluster's committed audit rows (none missing, none twice, each cluster's
# rows in its commit order), the IDs of all clusters are unique, and every
# publisher streams.  Node ids are static (471..473), not leased: this test
# is about Kafka.  Every broker is running again when it ends, also on a
# failure (END).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use GuidFleet;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $fleet = fleet();
my $brokers = $fleet->{kafka};
my $topic = 'fleet_faults_' . int(rand(1e9));
# librdkafka adjusts message.timeout.ms and socket.timeout.ms to it
my $txn_timeout_ms = 10000;
# the brokers' transaction.abort.timed.out.transaction.cleanup.interval.ms
# (Kafka's default; test/services/kafka.sh does not set it)
my $abort_scan_ms = 10000;
fleet_kafka_all_up();
END
{
	if ($fleet)
	{
		fleet_broker_continue($_) for 1 .. 3;
		fleet_kafka_all_up();
	}
}

my @nodes;
for my $i (1 .. 3)
{
	push @nodes, guid_node("fleet_faults_$i", node_id => 470 + $i,
		conf => kafka_conf($brokers, $topic, properties => "transaction.timeout.ms=$txn_timeout_ms"));
}

sub streaming_all
{
	for my $node (@nodes)
	{
		return 0
		  unless $node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status");
	}
	return 1;
}
ok(streaming_all(), 'the three publishers stream')
  or BAIL_OUT('publishers did not start: '
	  . join(', ', map { $_->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status') } @nodes));

my %sysid = map { $_->name => system_identifier($_) } @nodes;
is(scalar(keys %{ { map { $_ => 1 } values %sysid } }), 3, 'three clusters with distinct system identifiers');

# --- Load: committed and rolled-back transactions until told to stop ------------
for my $node (@nodes)
{
	$node->safe_psql('postgres', 'CREATE TABLE load_ctl (phase int PRIMARY KEY, stop bool NOT NULL)');
}

sub load_start
{
	my ($node, $phase) = @_;
	$node->safe_psql('postgres', "INSERT INTO load_ctl VALUES ($phase, false)");
	my %l = (node => $node, phase => $phase, in => '', out => '', err => '');
	$l{h} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', qq{
		DO \$\$
		DECLARE i int := 0;
		BEGIN
			WHILE NOT (SELECT stop FROM load_ctl WHERE phase = $phase) LOOP
				i := i + 1;
				PERFORM guid_next('faults') FROM generate_series(1, 1 + i % 4);
				IF i % 5 = 0 THEN ROLLBACK; ELSE COMMIT; END IF;
				PERFORM pg_sleep(0.01);
			END LOOP;
		END \$\$;} ],
		\$l{in}, \$l{out}, \$l{err});
	return \%l;
}

sub load_stop
{
	my $loads = shift;
	$_->{node}->safe_psql('postgres', "UPDATE load_ctl SET stop = true WHERE phase = $_->{phase}") for @$loads;
	for my $l (@$loads)
	{
		ok($l->{h}->finish, $l->{node}->name . ": the load ran without an error") or diag($l->{err});
	}
}

sub published
{
	my $node = shift;
	return $node->safe_psql('postgres', 'SELECT rows_published FROM guid.status');
}

# all_publish_more($n, $what): every publisher publishes $n rows more than
# now (the load runs), within minutes.
sub all_publish_more
{
	my ($n, $what) = @_;
	for my $node (@nodes)
	{
		my $want = published($node) + $n;
		ok($node->poll_query_until('postgres', "SELECT rows_published >= $want FROM guid.status"),
			$node->name . ": $what")
		  or diag($node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
	}
}

sub lsn_value
{
	my ($hi, $lo) = split m{/}, shift;
	return hex($hi) * 4294967296 + hex($lo);
}

# check_topic($label): the loads stopped, wait until every cluster's
# committed rows are published, then compare the read_committed topic with
# the union of the audit rows.
sub check_topic
{
	my $label = shift;
	my $msgs = [];
	$msgs = wait_published_by($_, $brokers, $topic, 300) for @nodes;

	my (%audit, @union);
	for my $node (@nodes)
	{
		$audit{ $sysid{ $node->name } } =
		  [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
		push @union, @{ $audit{ $sysid{ $node->name } } };
	}
	my %seen;
	my @dup_ids = grep { $seen{$_}++ } @union;
	is(scalar(@dup_ids), 0, "$label: the IDs of the three clusters are unique (" . scalar(@union) . ' audit rows)');

	%seen = ();
	my @dups = grep { $seen{$_}++ } map { $_->{value}{guid} } @$msgs;
	is(scalar(@dups), 0, "$label: no guid twice in the read_committed topic")
	  or diag('twice: ' . join(' ', @dups[ 0 .. ($#dups < 9 ? $#dups : 9) ]));
	my @foreign = grep { !$audit{ $_->{value}{system_identifier} } } @$msgs;
	is(scalar(@foreign), 0, "$label: every message comes from one of the three clusters");

	for my $node (@nodes)
	{
		my $sys = $sysid{ $node->name };
		my @mine = grep { $_->{value}{system_identifier} eq $sys } @$msgs;
		is_deeply(kafka_guids(\@mine), $audit{$sys}, "$label: " . $node->name
			  . ': its messages equal its committed audit rows exactly (' . scalar(@{ $audit{$sys} }) . ' rows)');
		# commit order: end LSNs never go back in topic order (one
		# partition), so each transaction's rows are together and in order
		my ($back, $prev) = (0, 0);
		for my $m (@mine)
		{
			my $lsn = lsn_value($m->{value}{lsn});
			$back++ if $lsn < $prev;
			$prev = $lsn;
		}
		is($back, 0, "$label: " . $node->name . ': its rows are in the topic in its commit order');
	}
	return scalar(@$msgs);
}

# --- Coordinators -----------------------------------------------------------------
sub partition_count
{
	my $t = shift;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $brokers, '-L', '-t', $t, '-m', '5' ], '>', \$out, '2>', \$err);
	return ($out =~ /^\s*topic "\Q$t\E" with (\d+) partitions/m)[0];
}

my $txn_parts = partition_count('__transaction_state');
my $offsets_parts = partition_count('__consumer_offsets');
ok($txn_parts && $offsets_parts, "__transaction_state has $txn_parts partitions, __consumer_offsets $offsets_parts");

my %coord;
for my $node (@nodes)
{
	my ($tid) = slurp_file($node->logfile) =~ /\(transactional\.id (\S+)\)/;
	my $tp = fleet_coordinator_partition($tid, $txn_parts);
	my $gp = fleet_coordinator_partition("guid-ckpt-$tid", $offsets_parts);
	$coord{ $node->name } = { tid => $tid, tp => $tp, gp => $gp,
		txn => fleet_partition_leader('__transaction_state', $tp),
		group => fleet_partition_leader('__consumer_offsets', $gp) };
	note($node->name . ": transactional.id $tid: __transaction_state-$tp led by broker "
		  . ($coord{ $node->name }{txn} // 'none') . ", group guid-ckpt-$tid: __consumer_offsets-$gp led by broker "
		  . ($coord{ $node->name }{group} // 'none'));
}

# --- Fault 1: kill -9 of a transaction coordinator -----------------------------
my @loads = map { load_start($_, 1) } @nodes;
all_publish_more(100, 'rows stream to the 3 brokers');

my $data_leader = fleet_partition_leader($topic, 0);
ok(defined $data_leader, "broker $data_leader leads partition 0 of $topic");

# The broker to kill: a transaction coordinator of some cluster, not the data
# partition's leader if one can be (that is 044's fault), and of those the one
# coordinating most (transactions and checkpoint groups).
my ($victim, $victim_node, $score) = (undef, undef, -1);
for my $node (@nodes)
{
	my $b = $coord{ $node->name }{txn};
	next unless defined $b;
	my $s = ($b != $data_leader ? 10 : 0)
	  + grep({ ($_->{txn} // 0) == $b } values %coord)
	  + grep({ defined $_->{group} && $_->{group} == $b } values %coord);
	($victim, $victim_node, $score) = ($b, $node, $s) if $s > $score;
}
ok(defined $victim, 'a broker hosts a transaction coordinator') or BAIL_OUT('no transaction coordinator found');
my $c = $coord{ $victim_node->name };

# What the broker says: the coordinator logs the partition of every
# transactional.id it initialises.
my %logged;
for my $b (1 .. 3)
{
	my $log = slurp_file("$fleet->{kafka_dir}/$b/kafka.log");
	while ($log =~ /Initialized transactionalId \Q$c->{tid}\E with producerId \d+ and producer epoch \d+ on partition __transaction_state-(\d+)/g)
	{
		$logged{partition} = $1;
		$logged{broker} = $b;
	}
}
is($logged{partition}, $c->{tp},
	"the broker log names __transaction_state-$c->{tp} for $c->{tid} (abs(Java hashCode) % $txn_parts)");
is($logged{broker}, $victim, "broker $victim, the partition's leader, logged initialising it");
note("killing broker $victim: transaction coordinator of "
	  . join(', ', map { $_->name } grep { ($coord{ $_->name }{txn} // 0) == $victim } @nodes)
	  . '; checkpoint group coordinator of '
	  . (join(', ', map { $_->name } grep { ($coord{ $_->name }{group} // 0) == $victim } @nodes) || 'none')
	  . "; data partition leader: broker $data_leader");

my $t0 = time;
fleet_broker_kill($victim);
my $moved;
for (1 .. 1200)
{
	$moved = fleet_partition_leader('__transaction_state', $c->{tp});
	last if defined $moved && $moved != $victim;
	select(undef, undef, undef, 0.1);
}
ok(defined $moved && $moved != $victim, "another broker ($moved) coordinates $c->{tid}'s transactions");
all_publish_more(200, 'the stream goes on with the coordinator killed');
note(sprintf('figure: every cluster published 200 rows more %.1f s after the kill -9 of the transaction coordinator',
		time - $t0));

fleet_broker_resume($victim);
fleet_kafka_all_up();
all_publish_more(100, 'the stream goes on with the broker back');
load_stop(\@loads);
my $n1 = check_topic('after the coordinator kill');

# --- Fault 2: the data partition's leader paused past the transaction timeout ---
@loads = map { load_start($_, 2) } @nodes;
all_publish_more(100, 'rows stream again');
$data_leader = fleet_partition_leader($topic, 0);
ok(defined $data_leader, "broker $data_leader leads partition 0 of $topic");
note("pausing broker $data_leader (data partition leader; transaction coordinator of "
	  . (join(', ', map { $_->name } grep { ($coord{ $_->name }{txn} // 0) == $data_leader } @nodes) || 'none')
	  . ')');

$t0 = time;
fleet_broker_pause($data_leader);
my $pause_ms = $txn_timeout_ms + $abort_scan_ms + 5000;
my $new_leader;
for (1 .. 1200)
{
	$new_leader = fleet_partition_leader($topic, 0);
	last if defined $new_leader && $new_leader != $data_leader;
	select(undef, undef, undef, 0.1);
}
ok(defined $new_leader && $new_leader != $data_leader,
	"another broker ($new_leader) leads the partition while broker $data_leader is paused");
# the pause lasts past the transaction timeout and the abort scan: the
# transactions open when it began are aborted by their coordinators
my $left = $t0 + $pause_ms / 1000 - time;
select(undef, undef, undef, $left) if $left > 0;
fleet_broker_continue($data_leader);
note(sprintf('broker %d paused for %.1f s', $data_leader, time - $t0));
$t0 = time;

all_publish_more(200, 'the stream goes on after the pause');
note(sprintf('figure: every cluster published 200 rows more %.1f s after kill -CONT of the paused data partition leader',
		time - $t0));
fleet_kafka_all_up();
load_stop(\@loads);
my $n2 = check_topic('after the pause');
cmp_ok($n2, '>', $n1, 'rows were published during the second fault');

# --- A transaction held open past transaction.timeout.ms ------------------------
# What a lost or paused broker can do to a commit, made certain: cluster 1's
# publisher waits before its commit (guid.publisher_test_pause) until its
# coordinator has rolled the transaction back for the timeout, which bumps
# the producer's epoch.  The commit is then fenced although no other producer
# has the transactional.id: the publisher must say what happened (not tell
# the operator to stop a copy of the cluster that does not exist), start a
# new producer, and publish the rows once.
my $paused = $nodes[0];
my $ptid = $coord{ $paused->name }{tid};

sub timeout_rollbacks
{
	my $n = 0;
	for my $b (1 .. 3)
	{
		my $log = slurp_file("$fleet->{kafka_dir}/$b/kafka.log");
		$n++ while $log =~ /Completed rollback of ongoing transaction for transactionalId \Q$ptid\E due to timeout/g;
	}
	return $n;
}
my $rollbacks = timeout_rollbacks();
my $log_at = -s $paused->logfile;
$paused->safe_psql('postgres', "ALTER SYSTEM SET guid.publisher_test_pause = 'before_commit'");
$paused->safe_psql('postgres', 'SELECT pg_reload_conf()');
$paused->safe_psql('postgres', "SELECT guid_next('faults') FROM generate_series(1, 3)");
ok($paused->poll_query_until('postgres', "SELECT publisher_state = 'paused before_commit' FROM guid.status"),
	$paused->name . ': the publisher holds its Kafka transaction open before the commit');
my $rolled = 0;
for (1 .. 1800)
{
	$rolled = timeout_rollbacks() > $rollbacks and last;
	select(undef, undef, undef, 0.1);
}
ok($rolled, "the coordinator rolled back ${ptid}'s transaction for the timeout (broker log)");
$paused->safe_psql('postgres', 'ALTER SYSTEM RESET guid.publisher_test_pause');
$paused->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($paused->poll_query_until('postgres',
		"SELECT publisher_state = 'streaming' AND publish_lag_seconds = 0 FROM guid.status"),
	$paused->name . ': the publisher streams again and has published everything');
my @plog = grep { /guid publisher: / } split /\n/, substr(slurp_file($paused->logfile), $log_at);
ok(scalar(grep { /fenced after its Kafka transaction was open \d+ ms, longer than transaction\.timeout\.ms \(10000 ms\)/ } @plog),
	$paused->name . ': the log says the coordinator rolled back the transaction open past its timeout')
  or diag(join("\n", @plog));
is(scalar(grep { /another producer started with transactional\.id/ } @plog), 0,
	$paused->name . ': no warning blames a copy of the cluster (no other producer started)');
check_topic('after a transaction rolled back for its timeout');

ok(streaming_all(), 'every publisher is streaming at the end');
$_->stop for @nodes;
done_testing();
