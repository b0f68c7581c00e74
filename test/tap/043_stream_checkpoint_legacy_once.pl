# After the upgrade from a checkpoint in <topic>_checkpoints, that old record
# is never read again, also when the consumer group's offset is lost later.
#
# A cluster upgraded from 1.5 reads its record from the old topic once and
# from then on keeps the checkpoint in its consumer group.  The record stays
# in the compacted topic.  If the group's offset is then lost (an operator
# deletes the group, or it expires after offsets.retention.minutes), the
# publisher finds no offset and must not fall back to that stale record: it
# is older than what Kafka holds, and a slot whose saved position is no newer
# than it (after a crash, the slot's position on disk is the one of the last
# PostgreSQL checkpoint) would be streamed from there again, publishing again
# every row since the upgrade.  A lost checkpoint with the slot still there
# is a gap: the publisher stops, publishes nothing twice, and says so.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t048_$$";
my $legacy = "${topic}_checkpoints";

sub streaming
{
	my $node = shift;
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT($node->name . ' did not stream: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
}

sub audit_guids
{
	my $node = shift;
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
}

sub legacy_reads
{
	my $node = shift;
	my @reads = PostgreSQL::Test::Utils::slurp_file($node->logfile) =~ /as releases before 1\.6 wrote it/g;
	return scalar @reads;
}

# No PostgreSQL checkpoint but the ones the test asks for: the slot's saved
# position stays where the clean stop left it.
my $node = guid_node('legacy', node_id => 46,
	conf => kafka_conf($brokers, $topic) . "checkpoint_timeout = '1h'\nmax_wal_size = '1GB'\n");
streaming($node);
$node->safe_psql('postgres', "SELECT guid_next('before') FROM generate_series(1, 20)");
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids($node), 'published before the upgrade');

# --- The cluster as 1.5 left it: its record in <topic>_checkpoints, no group ---------------
my $group = checkpoint_group($node);
$node->stop;
my $value = group_checkpoint($brokers, $group, $topic, 1);
ok(defined $value, "the checkpoint at shutdown: $value");
kafka_admin($brokers, 'delete-group', $group);
(my $tid = $group) =~ s/^guid-ckpt-//;
kafka_admin($brokers, 'create', $legacy, 1);
kafka_produce($brokers, $legacy, 0, [ $tid, $value ]);

$node->start;
streaming($node);
is(legacy_reads($node), 1, 'the upgrade reads the old record once');
$node->safe_psql('postgres', "SELECT guid_next('after_upgrade') FROM generate_series(1, 25)");
my $msgs = wait_published($node, $brokers, $topic);
is_deeply(kafka_guids($msgs), audit_guids($node), 'every committed row in Kafka once after the upgrade');
ok(defined group_checkpoint($brokers, $group, $topic), 'the checkpoint is in the group again');

# --- The group's offset is lost while the cluster is down after a crash ----------------------
my $pid = $node->{_pid};
$node->kill9;
for (1 .. 600) { last unless kill 0, $pid; select(undef, undef, undef, 0.05); }
kafka_admin($brokers, 'delete-group', $group);
is(group_checkpoint($brokers, $group, $topic, 1), undef, 'the group and its offset are gone');
$node->start;
ok($node->poll_query_until('postgres',
	"SELECT publisher_state = 'gap' OR rows_published > 0 FROM guid.status"),
	'the publisher decided');
my ($state, $error) = split /\|/, $node->safe_psql('postgres',
	"SELECT publisher_state, publisher_error FROM guid.status");
is($state, 'gap', 'a lost checkpoint with the slot still there is a gap');
like($error // '', qr/Kafka holds no checkpoint/, '... saying that Kafka holds no checkpoint for the slot');
is(legacy_reads($node), 1, 'the old record was not read again');

# Whatever the publisher did, let it finish publishing, then count.
my %seen;
$node->poll_query_until('postgres', "SELECT publisher_state <> 'streaming' OR publish_lag_seconds = 0 FROM guid.status");
$msgs = kafka_read($brokers, $topic);
my @twice = grep { $seen{$_}++ } map { $_->{value}{guid} } @$msgs;
is(scalar @twice, 0, 'no row published twice (' . scalar(@twice) . ' were)');

$node->stop;
done_testing();
