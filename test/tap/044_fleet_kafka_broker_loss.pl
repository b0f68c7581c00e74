# The audit stream on the 3-broker fleet Kafka: the topics guid creates get
# replication factor 3 and min.insync.replicas 2 (the automatic settings),
# and the broker leading the data partition, killed with SIGKILL while rows
# stream, costs neither a row nor a duplicate: the stream goes on through the
# two brokers left, and once the broker is back the read_committed topic
# equals the committed audit rows exactly.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use GuidFleet;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $fleet = fleet();
my $brokers = $fleet->{kafka};
my $topic = 'fleet_loss_' . int(rand(1e9));
fleet_kafka_all_up();
END { fleet_kafka_all_up() if $fleet; }

my $node = guid_node('fleet_loss', node_id => 45, conf => kafka_conf($brokers, $topic));
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start: '
	  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));

# --- What guid created -------------------------------------------------------
my ($meta_out, $meta_err) = ('', '');
IPC::Run::run([ 'kcat', '-b', $brokers, '-L' ], '>', \$meta_out, '2>', \$meta_err);
my @created = $meta_out =~ /^\s*topic "(\Q$topic\E[^"]*)"/mg;
ok(grep({ $_ eq $topic } @created), "guid created the data topic $topic");
for my $t (@created)
{
	is(fleet_topic_replication($t, 'replication.factor=3 min.insync.replicas=2'),
		'replication.factor=3 min.insync.replicas=2',
		"$t: replication factor 3, min.insync.replicas 2 (3 brokers, automatic settings)");
}

# --- Rows streaming: committed and rolled-back transactions, until told to stop
$node->safe_psql('postgres', 'CREATE TABLE load_ctl (stop bool NOT NULL); INSERT INTO load_ctl VALUES (false)');
my ($lin, $lout, $lerr) = ('', '', '');
my $load = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', q{
	DO $$
	DECLARE i int := 0;
	BEGIN
		WHILE NOT (SELECT stop FROM load_ctl) LOOP
			i := i + 1;
			PERFORM guid_next('loss') FROM generate_series(1, 1 + i % 4);
			IF i % 5 = 0 THEN ROLLBACK; ELSE COMMIT; END IF;
			PERFORM pg_sleep(0.005);
		END LOOP;
	END $$;} ],
	\$lin, \$lout, \$lerr);

sub published
{
	return $node->safe_psql('postgres', 'SELECT rows_published FROM guid.status');
}

ok($node->poll_query_until('postgres', 'SELECT rows_published >= 200 FROM guid.status'),
	'rows stream to the 3 brokers');

# --- kill -9 of the broker leading the data partition ---------------------------
my $leader = fleet_partition_leader($topic, 0);
ok(defined $leader, "broker $leader leads partition 0 of $topic");
fleet_broker_kill($leader);
my $at_kill = published();
note("killed broker $leader with $at_kill rows published");
my $new_leader;
for (1 .. 600)
{
	$new_leader = fleet_partition_leader($topic, 0);
	last if defined $new_leader && $new_leader != $leader;
	select(undef, undef, undef, 0.1);
}
ok(defined $new_leader && $new_leader != $leader, "another broker ($new_leader) leads the partition");
ok($node->poll_query_until('postgres', 'SELECT rows_published >= ' . ($at_kill + 500) . ' FROM guid.status'),
	'the stream goes on through the two brokers left (min.insync.replicas 2 is met)')
  or diag($node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));

# --- The broker back; the load stopped ----------------------------------------
fleet_broker_resume($leader);
ok($node->poll_query_until('postgres', 'SELECT rows_published >= ' . (published() + 200) . ' FROM guid.status'),
	'the stream goes on with the broker back');
$node->safe_psql('postgres', 'UPDATE load_ctl SET stop = true');
ok($load->finish, 'the load ran without an error') or diag($lerr);

my $msgs = wait_published($node, $brokers, $topic, 240);
my @audit = split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid');
cmp_ok(scalar(@audit), '>', $at_kill, 'rows were committed after the kill');
my $got = kafka_guids($msgs);
my %seen;
my @dups = grep { $seen{$_}++ } @$got;
is(scalar(@dups), 0, 'no guid twice in the read_committed topic');
is_deeply($got, \@audit, 'the read_committed topic equals the committed audit rows exactly ('
	  . scalar(@audit) . ' rows)');

$node->stop;
done_testing();
