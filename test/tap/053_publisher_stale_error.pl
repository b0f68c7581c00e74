# What librdkafka reported during one wait is not shown as the cause of a
# later one: once Kafka answered, the publisher forgets it.
#
# The broker frozen (SIGSTOP) with socket.timeout.ms = 2000, a wait shows
# "librdkafka reported: ..." (a request timed out); thawed, it streams
# again.  Then send_offsets_to_transaction blocks (the test build's
# guid.publisher_test_pause = 'hang_send_offsets'): its wait shows what it
# waits for, and no librdkafka error from the earlier freeze.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $kafka = kafka_start('stale');
my $brokers = $kafka->{brokers};
my $topic = 'guid_assignments';
my $node = guid_node('stale', node_id => 53,
	conf => kafka_conf($brokers, $topic, properties => 'socket.timeout.ms=2000'));
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start');

sub audit_guids
{
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
}

sub load
{
	my ($tag, $n) = @_;
	$node->safe_psql('postgres', "SELECT guid_next('$tag') FROM generate_series(1, $n)");
}

sub broker_signal
{
	my $sig = shift;
	my $pid = slurp_file("$kafka->{dir}/kafka.pid");
	chomp $pid;
	kill $sig, $pid or die "kill $sig $pid: $!";
}

# never leave the broker frozen, whatever happens
END
{
	local $?;
	if ($kafka && -f "$kafka->{dir}/kafka.pid")
	{
		my $pid = slurp_file("$kafka->{dir}/kafka.pid");
		chomp $pid;
		kill 'CONT', $pid;
	}
}

load('before', 3);
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(), 'streaming');

# 1. frozen: a wait shows what librdkafka reported
broker_signal('STOP');
load('frozen', 3);
my $seen = $node->poll_query_until('postgres',
	"SELECT publisher_error LIKE '%: waiting for Kafka at % librdkafka reported: %' FROM guid.status");
broker_signal('CONT');
ok($seen, 'broker frozen: the wait shows the error librdkafka reported');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic, 240)), audit_guids(), 'thawed: it streams again');
is($node->safe_psql('postgres', 'SELECT publisher_error IS NULL FROM guid.status'), 't', 'the error clears');

# 2. a later wait, with the broker up: no stale librdkafka error in it
my $pid = publisher_pid($node);
$node->append_conf('postgresql.conf', "guid.publisher_test_pause = 'hang_send_offsets'\n");
$node->reload;
load('hang', 3);
ok($node->poll_query_until('postgres',
		"SELECT publisher_state = 'waiting for Kafka: checkpoint' "
		  . "AND publisher_error LIKE 'checkpoint: waiting for Kafka % send_offsets_to_transaction: no answer after % ms%' FROM guid.status"),
	'send_offsets_to_transaction blocked: guid.status shows it');
my $err = $node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status');
unlike($err, qr/librdkafka reported/, 'the later wait does not show the error of the earlier freeze')
  or diag($err);

# the blocked worker stopped, the next one (no hang) streams exactly once
$node->append_conf('postgresql.conf', "guid.publisher_test_pause = ''\n");
$node->reload;
kill 'TERM', $pid or die "kill TERM $pid: $!";
$node->poll_query_until('postgres', "SELECT publisher_pid NOT IN (0, $pid) FROM guid.status")
  or die 'no new publisher';
is_deeply(kafka_guids(wait_published($node, $brokers, $topic, 240)), audit_guids(),
	'a new publisher: the topic equals guid.audit exactly');

$node->stop;
done_testing();
