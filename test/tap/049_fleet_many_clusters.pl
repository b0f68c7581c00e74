# 049_fleet_many_clusters.pl: many clusters on the fleet (issue 14, items 3
# and 4): 8 real PostgreSQL clusters (shared_buffers 16MB) lease their node
# ids from the fleet's 3-server ZooKeeper ensemble under one namespace and
# publish, all at once and under a modest continuous load, into one data
# topic on the 3 fleet brokers; guid_lease_sim (test/fleet/) holds the other
# 1,016 ids of that namespace beside them, so the namespace is full.
#
#  1. 1,024 ids held, none twice, across the real clusters and the simulated
#     holders, and ZooKeeper's leader agrees (a lease znode per id, owned by
#     its holder's session); the simulator reports no violation.
#  2. One cluster's publisher restarted while the 7 others stream: the
#     background worker sent SIGTERM (what pg_terminate_backend sends; the
#     postmaster starts it again) three times, then once while another
#     producer's transaction stays open on the shared data topic (a
#     publisher of a lost host, kafka_open_txn), then the whole cluster
#     restarted, then the worker killed with SIGKILL (a crash restart).  Each time it streams again, and its new rows
#     reach the read_committed topic.  Asserted bound: streaming again
#     before the producers' transaction.timeout.ms (set to 60 s) could have
#     expired, i.e. without waiting on another cluster's transaction; and
#     streaming again while a foreign transaction is still open.
#  3. At the end the read_committed topic equals exactly the union of the 8
#     clusters' committed audit rows (each message naming its cluster), and
#     the IDs of the 8 are unique.
#
# Figures (make fleet-bench): restart times (to streaming, to the first new
# row in the read_committed topic, and for comparison to the first row of
# another cluster issued after the restart), time to lease of the simulated
# holders, memory of the 8 clusters.  Never asserted: the machine is shared.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use GuidFleet;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $sim_bin = $ENV{GUID_LEASE_SIM}
  or BAIL_OUT('GUID_LEASE_SIM is not set (make test sets it)');
my $fleet = fleet();
my $brokers = $fleet->{kafka};
my $tag = int(rand(1e9));
my $ns = "fleet_many_$tag";
my $topic = "fleet_many_$tag";
my $n_real = 8;
my $N = 1024;
my $n_sim = $N - $n_real;
my $txn_timeout_ms = 60000;
my $patience = 300;				# seconds for a condition that does not come
my $guid_epoch_ms = 1735689600000;

my $t_start = time;
fleet_kafka_all_up();

my (@nodes, %load, $sim, $open_txn);
my ($sim_in, $sim_out) = ('', '');
my ($open_in, $open_out, $open_err) = ('', '', '');
END
{
	local $?;
	$open_txn->kill_kill if $open_txn && $open_txn->pumpable;
	$sim->kill_kill if $sim && $sim->pumpable;
	fleet_kafka_all_up() if $fleet;
}

# --- 8 clusters ------------------------------------------------------------------
my $conf = zk_conf($fleet->{zookeeper}, $ns, '30s')
  . kafka_conf($brokers, $topic, properties => "transaction.timeout.ms=$txn_timeout_ms")
  . "shared_buffers = 16MB\nmax_connections = 10\n"
  . "restart_after_crash = on\n";	# PostgreSQL::Test::Cluster turns it off
for my $i (1 .. $n_real)
{
	push @nodes, guid_node("many_$i", node_id => undef, conf => $conf);
}
my %cluster_id;					# node name => leased id
for my $node (@nodes)
{
	$cluster_id{ $node->name } = wait_for_lease($node);
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT($node->name . ' publisher did not start: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
	$node->safe_psql('postgres', q{
		CREATE TABLE load_ctl (stop bool NOT NULL);
		INSERT INTO load_ctl VALUES (false);
		-- wait_streaming(old, limit_s): when (epoch, s) a publisher other
		-- than pid old streams; NULL when none within limit_s.
		CREATE FUNCTION wait_streaming(old int, limit_s float8) RETURNS float8
		LANGUAGE plpgsql AS $$
		DECLARE t0 timestamptz := clock_timestamp();
		BEGIN
			LOOP
				IF EXISTS (SELECT FROM guid.status WHERE publisher_state = 'streaming'
						AND publisher_pid IS NOT NULL AND publisher_pid <> old) THEN
					RETURN extract(epoch FROM clock_timestamp());
				END IF;
				IF clock_timestamp() - t0 > limit_s * interval '1 s' THEN RETURN NULL; END IF;
				PERFORM pg_sleep(0.01);
			END LOOP;
		END $$;});
}
is(scalar(keys %{ { map { $_ => 1 } values %cluster_id } }), $n_real,
	"the $n_real clusters leased $n_real distinct ids from the fleet ensemble: "
	  . join(',', sort { $a <=> $b } values %cluster_id));

# load_start($node): a session that commits 1 to 3 audit rows every ~200 ms
# (and rolls back every fifth transaction) until load_stop.
sub load_start
{
	my $node = shift;
	$node->safe_psql('postgres', 'UPDATE load_ctl SET stop = false');
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', q{
		DO $$
		DECLARE i int := 0;
		BEGIN
			WHILE NOT (SELECT stop FROM load_ctl) LOOP
				i := i + 1;
				PERFORM guid_next('many') FROM generate_series(1, 1 + i % 3);
				IF i % 5 = 0 THEN ROLLBACK; ELSE COMMIT; END IF;
				PERFORM pg_sleep(0.2);
			END LOOP;
		END $$;} ],
		\$in, \$out, \$err);
	$load{ $node->name } = { h => $h, err => \$err };
}

# load_stop($node, $dead_ok): stop it; true if it ran without an error ($dead_ok:
# the cluster was restarted under it, so its session was cut).
sub load_stop
{
	my ($node, $dead_ok) = @_;
	my $l = delete $load{ $node->name };
	$node->safe_psql('postgres', 'UPDATE load_ctl SET stop = true') unless $dead_ok;
	$l->{h}->finish;
	return 1 if $dead_ok;
	diag $node->name . ' load: ' . ${ $l->{err} } if $l->{h}->result;
	return !$l->{h}->result;
}

load_start($_) for @nodes;
for my $node (@nodes)
{
	ok($node->poll_query_until('postgres', 'SELECT rows_published >= 20 FROM guid.status'),
		$node->name . ' streams to the 3 brokers');
}

# --- 1,016 simulated holders beside them -------------------------------------------
my $sim_log = "$PostgreSQL::Test::Utils::tmp_check/guid_lease_sim_049.stderr";
$sim = IPC::Run::start(
	[ $sim_bin, '--zookeeper', $fleet->{zookeeper}, '--namespace', $ns, '--timeout', 30000 ],
	'<', \$sim_in, '>', \$sim_out, '2>', $sim_log);

# sim_cmd($line, $answer_re): send a command, return the answer's lines.
sub sim_cmd
{
	my ($line, $re) = @_;
	$sim_out = '';
	$sim_in .= "$line\n";
	my $timer = IPC::Run::timer(60);
	$timer->start;
	$sim->pump until $sim_out =~ /^$re.*\n/m || $timer->is_expired;
	die "guid_lease_sim did not answer '$line': $sim_out" unless $sim_out =~ /^$re.*\n/m;
	return split /\n/, $sim_out;
}

sub sim_status
{
	my ($line) = grep { /^status / } sim_cmd('status', 'status ');
	my %s = $line =~ /(\w+)=(\S+)/g;
	$s{line} = $line;
	return \%s;
}

# sim_holders(): id => session (hex) of each simulated holder holding one;
# ids held twice in 'dup'.
sub sim_holders
{
	my (%h, @dup);
	for (sim_cmd('holders', 'end'))
	{
		next unless /^holder \d+ (\d+) 0x([0-9a-f]+) /;
		push @dup, $1 if exists $h{$1};
		$h{$1} = $2;
	}
	return (\%h, \@dup);
}

sub zk_ports { return map { /:(\d+)$/ ? $1 : () } split /,/, $fleet->{zookeeper}; }

# zk_leases(): nodes/<id> of the namespace => owning session (hex), from
# the fleet leader's dump.
sub zk_leases
{
	my ($leader) = grep { GuidTest::zk_four($_, 'srvr') =~ /^Mode: leader$/m } zk_ports();
	return undef unless defined $leader;
	my (%owner, $session);
	for (split /\n/, GuidTest::zk_four($leader, 'dump'))
	{
		if (/^0x([0-9a-f]+):\s*$/) { $session = $1; next; }
		$owner{$1} = $session if m{^\s+/guid/\Q$ns\E/nodes/(\d+)$} && defined $session;
	}
	return \%owner;
}

# namespace_full($label): every one of the 1,024 ids held exactly once
# across the clusters and the simulated holders, and ZooKeeper agrees.
sub namespace_full
{
	my $label = shift;
	my ($sim_h, $sim_dup) = sim_holders();
	my %holder = %$sim_h;
	my @twice = @$sim_dup;
	my %want;
	for my $node (@nodes)
	{
		my ($id, $session) = split /\|/,
		  $node->safe_psql('postgres', "SELECT node_id, session_id FROM guid.status WHERE mode = 'leased'");
		next unless defined $id && $id ne '';
		push @twice, $id if exists $holder{$id};
		(my $hex = $session) =~ s/^0x0*//;
		$holder{$id} = $hex;
	}
	is(scalar(keys %holder) . ' ' . scalar(@twice), "$N 0",
		"$label: $N ids held across $n_real clusters and $n_sim simulated holders, none twice")
	  or diag "held twice: @twice";
	my $zk = zk_leases() // {};
	my @bad = grep { ($zk->{$_} // '') !~ /^0*\Q$holder{$_}\E$/ } sort { $a <=> $b } keys %holder;
	push @bad, grep { !exists $holder{$_} } keys %$zk;
	is(scalar(keys %$zk) . ' ' . scalar(@bad), "$N 0",
		"$label: ZooKeeper's leader lists one lease znode per id, owned by its holder's session, and no other")
	  or diag "disagreeing ids: @bad[0 .. ($#bad < 9 ? $#bad : 9)]";
}

sim_cmd("add $n_sim", 'add ');
my $until = time + $patience;
my $s = sim_status();
while ($s->{held} < $n_sim && time < $until)
{
	sleep 0.5;
	$s = sim_status();
}
is($s->{held} . ' ' . $s->{distinct} . ' ' . $s->{dup}, "$n_sim $n_sim 0",
	"guid_lease_sim: $n_sim holders hold $n_sim distinct ids of the same namespace")
  or diag $s->{line};
note(sprintf('figure: %d simulated holders beside %d streaming clusters: time to lease p50 %d ms, p99 %d ms, max %d ms',
		$n_sim, $n_real, $s->{ttl_p50_ms}, $s->{ttl_p99_ms}, $s->{ttl_max_ms}));
namespace_full('namespace full');

# --- Memory of the 8 clusters ----------------------------------------------------
# Proportional set size (shared memory divided among the processes that map
# it) of each cluster's postmaster and children, and their resident sizes.
sub proc_kb
{
	my ($pid, $field) = @_;
	open my $fh, '<', "/proc/$pid/smaps_rollup" or return 0;
	while (my $line = <$fh>) { return $1 if $line =~ /^\Q$field\E:\s+(\d+) kB/; }
	return 0;
}
my (@pss, @rss, $procs);
for my $node (@nodes)
{
	open my $pf, '<', $node->data_dir . '/postmaster.pid' or die "postmaster.pid: $!";
	chomp(my $pid = <$pf>);
	close $pf;
	my @pids = ($pid);
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $fh, '<', $stat or next;
		my $line = <$fh> // '';
		close $fh;
		push @pids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $pid;
	}
	$procs += @pids;
	my ($p, $r) = (0, 0);
	for (@pids) { $p += proc_kb($_, 'Pss'); $r += proc_kb($_, 'Rss'); }
	push @pss, $p;
	push @rss, $r;
}
my $sum = sub { my $t = 0; $t += $_ for @_; $t };
my @sorted = sort { $a <=> $b } @pss;
note(sprintf('figure: memory of %d clusters under load (shared_buffers 16MB, %d processes): '
		  . 'PSS %.0f MB in all (%.0f to %.0f MB a cluster), RSS summed over processes %.0f MB',
		$n_real, $procs, $sum->(@pss) / 1024, $sorted[0] / 1024, $sorted[-1] / 1024, $sum->(@rss) / 1024));

# --- Publisher restarts while the 7 others stream ----------------------------------
my $victim = $nodes[-1];
my $victim_sysid = system_identifier($victim);

# topic_end(): the offset of the last message of the data topic (0 if none
# among the last 100 offsets, which may all be transaction markers).
sub topic_end
{
	my ($out, $err) = ('', '');
	# kcat may not see the end when the last offsets are transaction
	# markers: what it printed within 10 s is enough
	eval {
		IPC::Run::run([ 'kcat', '-C', '-b', $brokers, '-t', $topic, '-p', '0', '-o', '-100', '-e', '-q',
			'-X', 'isolation.level=read_uncommitted', '-f', '%o\n' ], '>', \$out, '2>', \$err,
			IPC::Run::timeout(10));
	};
	my @o = $out =~ /^(\d+)$/mg;
	return @o ? $o[-1] : 0;
}

# first_new_row($from_offset, $after_epoch, $streaming_epoch): when (epoch,
# s) a row of the victim issued after $after_epoch is first seen in the
# read_committed topic (undef if not within $patience); and, for
# comparison, when a row of another cluster issued after $streaming_epoch
# (the victim streaming again) is first seen: a read_committed reader sees
# nothing past a partition's last stable offset, so when both come at once
# it is the shared partition that was held back (by whichever producer's
# transaction was open), not the victim.
sub first_new_row
{
	my ($from, $after, $streaming) = @_;
	my $after_ms = int($after * 1000);
	my $streaming_ms = int(($streaming // $after) * 1000);
	my $others_at;
	my $until = time + $patience;
	while (time < $until)
	{
		# each poll reads on from where the last one stopped (at the last
		# stable offset): a read_committed reader gets nothing before it later
		my ($out, $err) = ('', '');
		eval {
			IPC::Run::run([ 'kcat', '-C', '-b', $brokers, '-t', $topic, '-p', '0', '-o', $from, '-e', '-q',
				'-X', 'isolation.level=read_committed', '-f', '%o %s\n' ], '>', \$out, '2>', \$err,
				IPC::Run::timeout(10));
		};
		my $now = time;
		for (split /\n/, $out)
		{
			next unless /^(\d+) /;
			$from = $1 + 1;
			next unless /"guid":"(\d+)"/;
			my $ms = ($1 >> 22) + $guid_epoch_ms;
			my $mine = /"system_identifier":"?\Q$victim_sysid\E\b/;
			$others_at //= $now if !$mine && $ms > $streaming_ms;
			return ($now, $others_at) if $mine && $ms > $after_ms;
		}
		sleep 0.1;
	}
	return (undef, $others_at);
}

# restart_publisher(): SIGTERM to the victim's publisher worker (what
# pg_terminate_backend sends; it refuses a worker without a database
# connection): it exits, and the postmaster starts it again after its
# bgw_restart_time (5 s).  Returns the kill's time and the ms until a new
# worker streams (undef if not within $patience).
sub restart_publisher
{
	my $old = publisher_pid($victim);
	my $t0 = time;
	kill 'TERM', $old or die "kill -TERM $old: $!";
	my $at = $victim->safe_psql('postgres', "SELECT wait_streaming($old, $patience)");
	return ($t0, $at eq '' ? undef : ($at - $t0) * 1000);
}

sub restart_check
{
	my ($label, $killed_at, $streaming_ms, $from, $others_before) = @_;
	ok(defined $streaming_ms && $streaming_ms < $txn_timeout_ms,
		"$label: the publisher streams again, before the producers' transaction.timeout.ms "
		  . "($txn_timeout_ms ms) could expire")
	  or diag 'after it: ' . $victim->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status');
	my $others_lag = 0;
	for (@nodes[0 .. $#nodes - 1])
	{
		my $lag = $_->safe_psql('postgres', 'SELECT coalesce(publish_lag_seconds, 0) FROM guid.status');
		$others_lag = $lag if $lag > $others_lag;
	}
	my ($row_at, $others_at) =
	  first_new_row($from, $killed_at, defined $streaming_ms ? $killed_at + $streaming_ms / 1000 : undef);
	ok(defined $row_at, "$label: a row it committed after the kill reaches the read_committed topic");
	my $others = others_published();
	my @stuck = grep { $others->{$_} <= $others_before->{$_} } keys %$others;
	is(scalar(@stuck), 0, "$label: the 7 other clusters published meanwhile")
	  or diag "stuck: @stuck";
	my $ms = sub { defined $_[0] ? sprintf('%.0f ms', ($_[0] - $killed_at) * 1000) : 'never' };
	my $f = sprintf('%s: streaming again after %.0f ms, first new row in the read_committed topic after %s '
		  . '(a row another cluster issued after the restart: %s; the other clusters\' publish lag then: up to %.1f s)',
		$label, $streaming_ms // -1, $ms->($row_at),
		defined $others_at || !defined $row_at ? $ms->($others_at) : 'not before it', $others_lag);
	note("figure: publisher restart with 7 other clusters streaming, $f");
}

sub others_published
{
	return { map { $_->name => $_->safe_psql('postgres', 'SELECT rows_published FROM guid.status') }
		  @nodes[0 .. $#nodes - 1] };
}

# 2a. the publisher worker terminated, three times.
for my $round (1 .. 3)
{
	my $before = others_published();
	my $from = topic_end();
	my ($killed_at, $ms) = restart_publisher();
	restart_check("restart $round (SIGTERM to the publisher worker)", $killed_at, $ms, $from, $before);
}

# 2b. ... while a publisher of a lost host holds a transaction open on the
# shared data topic: the restart does not wait for it (it reads its own
# checkpoint, not the partition's last stable offset).  The transaction is
# released afterwards; only then does read_committed show the new rows.
my $open_bin = "$PostgreSQL::Test::Utils::tmp_check/kafka_open_txn";
system_or_bail('cc', '-o', $open_bin, "$FindBin::RealBin/kafka_open_txn.c", '-lrdkafka');
$open_txn = IPC::Run::start([ $open_bin, $brokers, "lost-host-$tag", $topic ],
	'<', \$open_in, '>', \$open_out, '2>', \$open_err);
my $timer = IPC::Run::timer(120);
$timer->start;
$open_txn->pump until $open_out =~ /^open$/m || $timer->is_expired || !$open_txn->pumpable;
ok($open_out =~ /^open$/m, 'a producer of another host holds a transaction open on the data topic')
  or diag $open_err;
{
	my $before = others_published();
	my $from = topic_end();
	my ($killed_at, $ms) = restart_publisher();
	ok($open_txn->pumpable, 'that transaction is still open when the restarted publisher streams');
	$open_txn->signal('TERM');
	ok($open_txn->finish, 'the foreign transaction is aborted') or diag $open_err;
	restart_check('restart 4 (SIGTERM to the publisher worker, a foreign transaction open on the topic)',
		$killed_at, $ms, $from, $before);
}

# 2c. the whole cluster restarted (fast shutdown, start), then the
# publisher killed with SIGKILL (the postmaster reinitialises: every
# backend restarts, the load's session too).  The lease comes back each
# time: the clean shutdown freed the id and the restart takes it again; the
# crash restart reattaches the still-live ZooKeeper session.
sub wait_streaming_after
{
	my ($t0, $old) = @_;
	my $until = time + $patience;
	while (time < $until)
	{
		# (the server may be restarting: a failed connection is no answer)
		my ($rc, $out) = (1, '');
		eval {
			($rc, $out) = $victim->psql('postgres',
				"SELECT publisher_state = 'streaming' AND publisher_pid <> $old FROM guid.status");
		};
		return (time - $t0) * 1000 if $rc == 0 && $out eq 't';
		sleep 0.05;
	}
	return undef;
}

my $id_before = $cluster_id{ $victim->name };
for my $how ('the whole cluster: $node->restart', 'SIGKILL to the publisher worker: a crash restart')
{
	my $round = $how =~ /SIGKILL/ ? 6 : 5;
	my $before = others_published();
	my $from = topic_end();
	my $old = publisher_pid($victim);
	my $t0 = time;
	if ($round == 5)
	{
		$victim->restart;
	}
	else
	{
		kill 'KILL', $old or die "kill -9 $old: $!";
	}
	my $ms = wait_streaming_after($t0, $old);
	load_stop($victim, 1);
	# the load's first guid_next() needs the lease: after a clean shutdown
	# the restarted cluster takes its id again, which may come after the
	# publisher streams ("guid has no node id lease from ZooKeeper yet"
	# ended a load started at once, and no row of the victim followed)
	wait_for_lease($victim);
	load_start($victim);
	restart_check("restart $round ($how)", $t0, $ms, $from, $before);
	is(wait_for_lease($victim), $id_before, "restart $round: the cluster holds its id $id_before again");
}
namespace_full('after the restarts');

# --- The end: the topic against the audit rows ----------------------------------------
my $all_ok = 1;
$all_ok &&= load_stop($_) for @nodes;
ok($all_ok, 'every load ran without an error');
# Everything published: each publisher streaming with nothing waiting, and
# the topic holding as many distinct guids as the clusters committed.
my %by_sysid = map { system_identifier($_) => [ split /\n/,
	  $_->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ] } @nodes;
my $committed = 0;
$committed += @$_ for values %by_sysid;
$until = time + $patience;
while (time < $until)
{
	my $idle = grep { $_->safe_psql('postgres',
		"SELECT publisher_state = 'streaming' AND publish_lag_seconds = 0 FROM guid.status") eq 't' } @nodes;
	my %distinct = map { $_ => 1 } @{ kafka_read($brokers, $topic, 1) };
	last if $idle == @nodes && keys %distinct >= $committed;
	sleep 1;
}
my $msgs = kafka_read($brokers, $topic);
my @audit = sort { $a <=> $b } map { @$_ } values %by_sysid;
my %seen;
my @dup_ids = grep { $seen{$_}++ } @audit;
is(scalar(@dup_ids), 0, 'IDs unique across the ' . $n_real . ' clusters (' . scalar(@audit) . ' committed audit rows)');
is_deeply(kafka_guids($msgs), \@audit,
	'the read_committed topic equals exactly the union of the committed audit rows of the '
	  . "$n_real clusters (" . scalar(@audit) . ' rows, no loss, no duplicate)');
my %owner = map { my $sid = $_; map { $_ => $sid } @{ $by_sysid{$sid} } } keys %by_sysid;
my @misnamed = grep { ($owner{ $_->{value}{guid} } // '') ne $_->{value}{system_identifier} } @$msgs;
is(scalar(@misnamed), 0, 'each message names the cluster whose audit row it is');

$s = sim_status();
is($s->{violations}, 0,
	'the simulator saw no violation of the lease protocol (no id installed below a mark, '
	  . 'none while another holder\'s lease of it lasted)')
  or diag $s->{line};
note(sprintf('figure: simulated holders: leases fenced (deadline passed) %d, lost (session or znode) %d',
		$s->{lapses}, $s->{lost}));
$sim_in .= "quit\n";
$sim->finish;
$_->stop for @nodes;
note(sprintf('figure: test wall time %.0f s', time - $t_start));
done_testing();
