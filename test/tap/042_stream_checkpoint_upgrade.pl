# The checkpoint's form since 1.6, and the upgrade from the one before.
#
# A new install commits its checkpoint as the metadata of its consumer
# group's offset and creates no checkpoint topic.  A cluster upgraded from a
# release that kept it as a record in <topic>_checkpoints finds no offset for
# its group: it reads that record once, streams from it (nothing published
# again, nothing missing), and from its next commit on keeps it in the group.
# A data topic with more partitions than a checkpoint can record is refused
# clearly.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t041_$$";
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

sub topic_exists
{
	my $name = shift;
	my ($meta, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-L', '-b', $brokers ], '>', \$meta, '2>', \$err) or die "kcat -L: $err";
	return $meta =~ /topic "\Q$name\E"/;
}

sub lsn_of
{
	my ($hi, $lo) = shift =~ /^([0-9A-F]+)\/([0-9A-F]+)/ or return -1;
	return hex($hi) * 2**32 + hex($lo);
}

# --- A new install ------------------------------------------------------------------------
my $node = guid_node('upgrade', node_id => 42, conf => kafka_conf($brokers, $topic));
streaming($node);
$node->safe_psql('postgres', "SELECT guid_next('first') FROM generate_series(1, 25)");
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids($node), 'a new install publishes');
my $group = checkpoint_group($node);
like(group_checkpoint($brokers, $group, $topic), qr/^[0-9A-F]+\/[0-9A-F]+ tli=1\b/,
	"its checkpoint is the offset metadata of consumer group $group");
ok(!topic_exists($legacy), "... and it made no topic $legacy");

# --- The same cluster as a release before 1.6 left it ----------------------------------------
$node->safe_psql('postgres', "SELECT guid_next('unpublished') FROM generate_series(1, 5)");
$node->stop;
# the last committed one (a transaction the stop left open is aborted at
# the next start)
my $value = group_checkpoint($brokers, $group, $topic, 1);
ok(defined $value, "the checkpoint at shutdown: $value");
kafka_admin($brokers, 'delete-group', $group);
is(group_checkpoint($brokers, $group, $topic, 1), undef, 'the group and its offset are gone');
(my $tid = $group) =~ s/^guid-ckpt-//;
kafka_admin($brokers, 'create', $legacy, 1);
# an older record of the key, another cluster's, then the latest
kafka_produce($brokers, $legacy, 0, [ $tid, '0/1' ], [ "guid-other-1-guid_audit", 'FFFF/0 tli=1' ],
	[ $tid, $value ]);

$node->start;
streaming($node);
ok($node->log_contains(qr/checkpoint "\Q$value\E" read from topic \Q$legacy\E, as releases before 1.6 wrote it/),
	'the upgraded cluster reads its record from the old checkpoint topic, the latest of its key');
$node->safe_psql('postgres', "SELECT guid_next('after') FROM generate_series(1, 25)");
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids($node),
	'... and streams from it: every committed row in Kafka exactly once, none again, none missing');
my $now = group_checkpoint($brokers, $group, $topic);
ok(defined $now && lsn_of($now) >= lsn_of($value),
	'from its next commit on the checkpoint is in its group again (' . ($now // 'none') . ')');

$node->restart;
streaming($node);
$node->safe_psql('postgres', "SELECT guid_next('again') FROM generate_series(1, 5)");
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids($node),
	'a restart after the upgrade: still exactly once');
my @reads = PostgreSQL::Test::Utils::slurp_file($node->logfile) =~ /as releases before 1\.6 wrote it/g;
is(scalar @reads, 1, '... and the old topic was read only once');
$node->stop;

# --- More partitions than a checkpoint records --------------------------------------------
my $wide = "t041wide_$$";
kafka_admin($brokers, 'create', $wide, 201);
my $w = guid_node('wide', node_id => 43, conf => kafka_conf($brokers, $wide));
ok($w->poll_query_until('postgres', "SELECT publisher_state = 'error' FROM guid.status"),
	'a data topic of 201 partitions: state error');
like($w->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'),
	qr/topic \Q$wide\E has 201 partitions, more than the 200 a checkpoint can record .*offset\.metadata\.max\.bytes/,
	'guid.status says why, naming the broker setting');
is($w->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '0', '... and nothing was started');
$w->stop;
kafka_admin($brokers, 'delete', $wide);

done_testing();
