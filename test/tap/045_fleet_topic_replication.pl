# guid.kafka_replication_factor and guid.kafka_min_insync_replicas on the
# 3-broker fleet Kafka: a topic that exists with less replication than the
# settings ask is refused (guid.status shows why, a WARNING says it, nothing
# is streamed, the publisher retries), and streams once the setting is
# lowered or the topic fixed.  Invalid values stop the server at startup.
# The producer runs with acks=all: librdkafka refuses anything else for a
# transactional producer.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use GuidFleet;
use PostgreSQL::Test::Utils;
use Test::More;

my $fleet = fleet();
my $brokers = $fleet->{kafka};
my $run = int(rand(1e9));
fleet_kafka_all_up();

sub audit_guids
{
	my $node = shift;
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
}

# --- A topic with replication factor 1 on 3 brokers ------------------------------
my $rf1 = "fleet_rf1_$run";
kafka_admin($brokers, 'create', $rf1, 1, 1);
my $node = guid_node('fleet_rf1', node_id => 46, conf => kafka_conf($brokers, $rf1));
ok($node->poll_query_until('postgres',
		"SELECT publisher_state = 'error' AND publisher_error LIKE 'topic $rf1 has replication factor 1 and min.insync.replicas 1, below the 3 and 2 wanted (3 brokers): not publishing into it;%' FROM guid.status"),
	'a topic with replication factor 1: refused, guid.status says what it found and what it wants')
  or diag($node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
like($node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'),
	qr/alter the topic, or set guid\.kafka_replication_factor and guid\.kafka_min_insync_replicas lower$/,
	'... and how to fix it');
ok($node->wait_for_log(qr/WARNING:  guid publisher: topic \Q$rf1\E has replication factor 1/),
	'the log has a WARNING');
# Before its first session the publisher has no slot: audit rows are refused
# rather than written for a stream that does not run.
my ($state) = guid_sqlstate($node, "SELECT guid_next('rf1')");
ok(defined $state && $state ne '', 'an audited guid_next is refused while no slot exists');
is(scalar(@{ kafka_read($brokers, $rf1, 1) }), 0, 'nothing was streamed into the under-replicated topic');
is($node->safe_psql('postgres', 'SELECT rows_published FROM guid.status'), '0', 'guid.status: no row published');

# acks=all is in force: librdkafka refuses another acks for this producer.
$node->append_conf('postgresql.conf', "guid.kafka_properties = 'acks=1'\n");
$node->restart;
ok($node->poll_query_until('postgres',
		"SELECT publisher_error LIKE 'bad Kafka settings%acks%all%' FROM guid.status"),
	'guid.kafka_properties acks=1 is refused: the producer writes with acks=all')
  or diag($node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'));

# The setting lowered explicitly: it streams into the topic as it is.
$node->append_conf('postgresql.conf', "guid.kafka_properties = ''\nguid.kafka_replication_factor = 1\n");
$node->restart;
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status"),
	'guid.kafka_replication_factor = 1: the publisher streams')
  or diag($node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'));
$node->safe_psql('postgres', "SELECT guid_next('rf1_lowered') FROM generate_series(1, 5)");
is_deeply(kafka_guids(wait_published($node, $brokers, $rf1)), audit_guids($node),
	'guid.kafka_replication_factor = 1: the rows stream into it, each once');
$node->stop;

# --- A topic guid created, later altered to min.insync.replicas 1, then fixed ---
my $isr1 = "fleet_isr1_$run";
my $node2 = guid_node('fleet_isr1', node_id => 47, conf => kafka_conf($brokers, $isr1));
$node2->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or die 'not streaming: ' . $node2->safe_psql('postgres', 'SELECT publisher_error FROM guid.status');
$node2->safe_psql('postgres', "SELECT guid_next('isr1') FROM generate_series(1, 7)");
my $before = kafka_guids(wait_published($node2, $brokers, $isr1));
is_deeply($before, audit_guids($node2), 'streaming into the topic guid created');
kafka_admin($brokers, 'alter-config', $isr1, 'min.insync.replicas=1');
is(fleet_topic_replication_everywhere($isr1, 'replication.factor=3 min.insync.replicas=1'),
	'replication.factor=3 min.insync.replicas=1', 'the topic altered to min.insync.replicas 1, as every broker says');
$node2->restart;
ok($node2->poll_query_until('postgres',
		"SELECT publisher_state = 'error' AND publisher_error LIKE 'topic $isr1 has replication factor 3 and min.insync.replicas 1, below the 3 and 2 wanted%' FROM guid.status"),
	'at the next session: min.insync.replicas 1 on 3 replicas is refused')
  or diag($node2->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
$node2->safe_psql('postgres', "SELECT guid_next('isr1_refused') FROM generate_series(1, 6)");
my $pid = publisher_pid($node2);
# The publisher tries again (a new session leaves the state "error") and is
# refused again, with the rows waiting.
ok($node2->safe_psql('postgres', q{
	DO $$
	BEGIN
		FOR i IN 1 .. 30000 LOOP
			EXIT WHEN (SELECT publisher_state <> 'error' FROM guid.status);
			PERFORM pg_sleep(0.002);
		END LOOP;
	END $$;
	SELECT publisher_state <> 'error' FROM guid.status}) eq 't'
	  && $node2->poll_query_until('postgres', "SELECT publisher_state = 'error' FROM guid.status"),
	'the publisher tries again, and is refused again');
is(publisher_pid($node2), $pid, 'refusing ends a session, not the worker');
is($node2->safe_psql('postgres', 'SELECT rows_published FROM guid.status'), '0',
	'guid.status: no row published since the restart');
is_deeply(kafka_guids(kafka_read($brokers, $isr1)), $before, 'nothing more was streamed into the topic');
kafka_admin($brokers, 'alter-config', $isr1, 'min.insync.replicas=2');
is_deeply(kafka_guids(wait_published($node2, $brokers, $isr1)), audit_guids($node2),
	'the topic fixed (min.insync.replicas 2): a later try streams the waiting rows, each once, without a restart');
is($node2->safe_psql('postgres', 'SELECT publisher_error IS NULL FROM guid.status'), 't', 'the error clears');

# --- Explicit settings: what guid creates -------------------------------------------
my $two = "fleet_rf2_$run";
$node2->stop;
$node2 = guid_node('fleet_rf2', node_id => 49,
	conf => kafka_conf($brokers, $two) . "guid.kafka_replication_factor = 2\n");
ok($node2->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status"),
	'guid.kafka_replication_factor = 2: streaming');
is(fleet_topic_replication($two, 'replication.factor=2 min.insync.replicas=1'),
	'replication.factor=2 min.insync.replicas=1',
	'the topic is created with replication factor 2 and min.insync.replicas 1 (automatic below 3)');
$node2->stop;

# --- Invalid values stop the server at startup ------------------------------------------
my $i = 0;
for my $bad ("guid.kafka_replication_factor = 0", "guid.kafka_min_insync_replicas = -2",
	"guid.kafka_replication_factor = 2\nguid.kafka_min_insync_replicas = 3",
	"guid.kafka_replication_factor = 40000")
{
	$i++;
	my $n = guid_node("fleet_bad$i", node_id => 48, start => 0,
		conf => kafka_conf($brokers, "fleet_bad_$run") . "$bad\n");
	ok(!$n->start(fail_ok => 1), "'$bad' stops the server at startup");
	like(slurp_file($n->logfile), qr/guid\.kafka_(replication_factor|min_insync_replicas)/,
		'... and the log names the setting');
}

done_testing();
