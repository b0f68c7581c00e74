# The reference consumer skips nothing silently and pastes nothing into a
# command: a stored position that is out of range (retention deleted unread
# messages, or the topic was recreated) stops it with an error unless
# --from-earliest-on-reset says to go on from the earliest offset (the dedupe
# then skips what was applied); partitions added while it runs are consumed;
# --table, --schema and --name that need quoting work as given, in SQL and
# in Redis keys.  Messages are written with kcat in the publisher's format,
# with guids of a real cluster.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $consumer = $ENV{GUID_CONSUMER} or die 'GUID_CONSUMER not set: run this through make test';
my $redis = $ENV{GUID_REDIS} or die 'GUID_REDIS not set: run this through make test';
my (undef, $redis_port) = split /:/, $redis;
my $node = guid_node('csafety', node_id => 28);
$node->safe_psql('postgres', 'CREATE DATABASE target');
my $target = $node->connstr('target');

# run_consumer($topic, @args): (exited 0?, stdout, stderr) of a run that
# stops after 3 idle seconds.
sub run_consumer
{
	my ($topic, @args) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $consumer, '--brokers', $brokers, '--topic', $topic, '--conninfo', $target,
		'--idle-exit', '3', @args ], '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

sub guids_of
{
	return [ sort { $a <=> $b } map { $_->[1] =~ /"guid":"(\d+)"/ } @_ ];
}

# The guids in $table ([] if there is no such table).
sub applied
{
	my $table = shift;
	my ($ret, $out) = $node->psql('target', "SELECT guid FROM $table ORDER BY guid");
	return [ split /\n/, $out ];
}

# The stored positions of a consumer: "partition:next_offset,...".
sub stored
{
	my ($name, $topic) = @_;
	$name =~ s/'/''/g;
	my ($ret, $out) = $node->psql('target',
		"SELECT string_agg(partition || ':' || next_offset, ',' ORDER BY partition) "
		  . "FROM guid_consumer_offsets WHERE consumer = '$name' AND topic = '$topic'");
	return $out;
}


# --- Names that need quoting ------------------------------------------------------------------
my $tq = "t016q_$$";
kafka_admin($brokers, 'create', $tq, 1);
my @q = stream_messages($node, 20, 'quoted');
kafka_produce($brokers, $tq, 0, @q);
my $table = 'Audit "Copy"';    # capitals, a space, a double quote
my $name = "o'brien pay $$";   # a quote and a space
my @quoted = ('--table', $table, '--name', $name, '--redis', $redis);
my ($ok, $out, $err) = run_consumer($tq, @quoted);
ok($ok, '--table and --name that need quoting: the consumer runs') or diag($err);
like($out, qr/messages 20 applied 20 duplicates 0 fast_path_skips 0/, 'and applies every message');
is_deeply(applied('"Audit ""Copy"""'), guids_of(@q), 'into the table named exactly as given');
is(stored($name, $tq), '0:20', 'its position is stored under the name as given');
is(redis_cli({ port => $redis_port }, 'EXISTS', "guid:seen:$name:$table:" . guids_of(@q)->[0]), '1',
	'Redis holds each guid under the name and table as given');
$node->psql('target', "DELETE FROM guid_consumer_offsets WHERE topic = '$tq'");
($ok, $out, $err) = run_consumer($tq, @quoted);
like($out, qr/messages 20 applied 0 duplicates 0 fast_path_skips 20/,
	'rewound: the Redis fast path finds every guid under its whole key');

$node->safe_psql('target', 'CREATE SCHEMA "My Schema"');
($ok, $out, $err) = run_consumer($tq, '--schema', 'My Schema', '--table', 'Applied', '--name', "schema $$");
ok($ok, '--schema that needs quoting: the consumer runs') or diag($err);
is_deeply(applied('"My Schema"."Applied"'), guids_of(@q), 'into that schema\'s table');

# --- Out of range: retention deleted messages before they were read ---------------------------------
my $tr = "t016r_$$";
kafka_admin($brokers, 'create', $tr, 1);
my @r1 = stream_messages($node, 10, 'retention');
kafka_produce($brokers, $tr, 0, @r1);
($ok, $out, $err) = run_consumer($tr, '--name', 'ret', '--table', 'applied_ret');
like($out, qr/messages 10 applied 10 /, 'ten messages applied');
is(stored('ret', $tr), '0:10', 'position 10 stored');
my @r2 = stream_messages($node, 10, 'retention');
kafka_produce($brokers, $tr, 0, @r2);
kafka_admin($brokers, 'delete-records', $tr, 0, 15);    # 10 to 14 deleted unread

($ok, $out, $err) = run_consumer($tr, '--name', 'ret', '--table', 'applied_ret');
ok(!$ok, 'stored position before the earliest offset: the consumer stops with an error');
like($err, qr/partition 0 of topic $tr: the stored position is out of range.*--from-earliest-on-reset/s,
	'it says why and what to do');
is_deeply(applied('applied_ret'), guids_of(@r1), 'nothing was applied');
is(stored('ret', $tr), '0:10', 'the stored position is unchanged');

($ok, $out, $err) = run_consumer($tr, '--name', 'ret', '--table', 'applied_ret', '--from-earliest-on-reset');
ok($ok, 'with --from-earliest-on-reset it goes on') or diag($err);
like($err, qr/\[0\]: offset reset \(at offset 10, .*\) to BEGINNING: .*Offset out of range/,
	'it says on stderr (librdkafka\'s warning) where it reset the position');
like($out, qr/messages 5 applied 5 duplicates 0/, 'from the earliest offset Kafka still has');
is_deeply(applied('applied_ret'), guids_of(@r1, @r2[ 5 .. 9 ]), 'the table holds what Kafka still had');
is(stored('ret', $tr), '0:20', 'position 20 stored');

# --- Out of range: the topic was recreated ---------------------------------------------------------
my $tc = "t016c_$$";
kafka_admin($brokers, 'create', $tc, 1);
my @c1 = stream_messages($node, 10, 'recreated');
kafka_produce($brokers, $tc, 0, @c1);
($ok, $out, $err) = run_consumer($tc, '--name', 'rec', '--table', 'applied_rec');
like($out, qr/messages 10 applied 10 /, 'ten messages applied');
kafka_admin($brokers, 'delete', $tc);
kafka_admin($brokers, 'create', $tc, 1);
my @c2 = stream_messages($node, 3, 'recreated');
kafka_produce($brokers, $tc, 0, @c2, $c1[0]);    # three new messages and one already applied

($ok, $out, $err) = run_consumer($tc, '--name', 'rec', '--table', 'applied_rec');
ok(!$ok, 'stored position past the end of a recreated topic: the consumer stops with an error');
like($err, qr/the stored position is out of range/, 'it says why');
is(stored('rec', $tc), '0:10', 'the stored position is unchanged');
($ok, $out, $err) = run_consumer($tc, '--name', 'rec', '--table', 'applied_rec', '--from-earliest-on-reset');
ok($ok, 'with --from-earliest-on-reset it goes on') or diag($err);
like($out, qr/messages 4 applied 3 duplicates 1/, 'from the start of the new topic; the dedupe skips the old guid');
is_deeply(applied('applied_rec'), guids_of(@c1, @c2), 'the table holds every guid once');

# --- Partitions added while it runs ----------------------------------------------------------------
my $tp = "t016p_$$";
kafka_admin($brokers, 'create', $tp, 1);
my @p0 = stream_messages($node, 10, 'partitions');
kafka_produce($brokers, $tp, 0, @p0);
my ($pout, $perr) = ('', '');
my $h = IPC::Run::start([ $consumer, '--brokers', $brokers, '--topic', $tp, '--conninfo', $target,
	'--name', 'part', '--table', 'applied_part' ], '>', \$pout, '2>', \$perr);
$node->poll_query_until('target',
	"SELECT to_regclass('applied_part') IS NOT NULL AND (SELECT count(*) = 10 FROM applied_part)")
  or die "consumer made no progress: $perr";
kafka_admin($brokers, 'partitions', $tp, 3);
# kcat needs metadata that knows the new partitions
for (1 .. 300)
{
	my $meta = '';
	IPC::Run::run([ 'kcat', '-L', '-b', $brokers, '-t', $tp ], '>', \$meta);
	last if (() = $meta =~ /partition \d+,/g) == 3;
	select(undef, undef, undef, 0.2);
}
my @p1 = stream_messages($node, 5, 'partitions');
my @p2 = stream_messages($node, 5, 'partitions');
kafka_produce($brokers, $tp, 1, @p1);
kafka_produce($brokers, $tp, 2, @p2);
ok($node->poll_query_until('target', 'SELECT count(*) = 20 FROM applied_part'),
	'partitions added while it runs: their messages are applied');
is(stored('part', $tp), '0:10,1:5,2:5', 'with a stored position for each partition');
$h->signal('TERM');
$h->finish;
like($pout, qr/messages 20 applied 20 duplicates 0/, 'each message once');
like($perr, qr/topic $tp has 3 partitions now/, 'it says it follows the new partitions');

$node->stop;
done_testing();
