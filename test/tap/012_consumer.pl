# The reference consumer (guid_consumer): applies the stream into a
# PostgreSQL table exactly once, its Kafka position kept in the same
# transaction.  Killed with SIGKILL mid-stream and restarted, it ends with
# exactly the committed rows.  Rewound, the PostgreSQL dedupe (or, with
# --redis, the Redis fast path in front of it) applies nothing twice.
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
my $topic = "t012_$$";
my $node = guid_node('consumer', node_id => 24, conf => kafka_conf($brokers, $topic));
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start');
$node->safe_psql('postgres', 'CREATE DATABASE payments');
my $target = $node->connstr('payments');

for my $i (1 .. 20)
{
	$node->safe_psql('postgres', "SELECT count(guid_next('payment')) FROM generate_series(1, 500)");
	$node->safe_psql('postgres', "BEGIN; SELECT count(guid_next('payment')) FROM generate_series(1, 50); ROLLBACK;")
	  if $i % 4 == 0;
}
my $expected = join "\n", @{ kafka_guids(wait_published($node, $brokers, $topic)) };
is($expected, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid'), '10,000 rows published');

sub run_consumer
{
	my @args = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $consumer, '--brokers', $brokers, '--topic', $topic, '--conninfo', $target,
		'--idle-exit', '3', @args ], '>', \$out, '2>', \$err)
	  or die "guid_consumer failed: $err";
	return $out;
}

sub applied
{
	my $table = shift // 'guid_applied';
	return $node->safe_psql('payments', "SELECT guid FROM $table ORDER BY guid");
}

# --- Killed mid-stream ----------------------------------------------------------------------
my ($out, $err) = ('', '');
my $h = IPC::Run::start([ $consumer, '--brokers', $brokers, '--topic', $topic, '--conninfo', $target,
	'--batch', '20' ], '>', \$out, '2>', \$err);
$node->poll_query_until('payments', "SELECT to_regclass('guid_applied') IS NOT NULL AND (SELECT count(*) > 1000 FROM guid_applied)")
  or die "consumer made no progress: $err";
$h->signal('KILL');
$h->finish;
my $mid = $node->safe_psql('payments', 'SELECT count(*) FROM guid_applied');
cmp_ok($mid, '<', 10000, "killed mid-stream ($mid of 10000 applied)");
is($node->safe_psql('payments',
		"SELECT next_offset > 0 FROM guid_consumer_offsets WHERE consumer = 'reference' AND topic = '$topic'"),
	't', 'its position is stored in PostgreSQL');

like(run_consumer(), qr/applied \d+ duplicates 0/, 'restarted, it goes on from its stored position');
is(applied(), $expected, 'the table holds exactly the committed rows, each once');
like(run_consumer(), qr/^messages 0 /, 'run again: nothing left to apply');

# --- Rewound: the PostgreSQL dedupe ------------------------------------------------------------
$node->safe_psql('payments', 'DELETE FROM guid_consumer_offsets');
like(run_consumer(), qr/messages 10000 applied 0 duplicates 10000 fast_path_skips 0/,
	'rewound to the start: every message is a duplicate, none applied');
is(applied(), $expected, 'the table is unchanged');

# --- With the Redis fast path --------------------------------------------------------------------
my @redis = ('--redis', $ENV{GUID_REDIS} // die 'GUID_REDIS not set: run this through make test');
{
	my @fast = ('--name', "fast_$$", '--table', 'applied_fast', @redis);
	like(run_consumer(@fast), qr/messages 10000 applied 10000 duplicates 0 fast_path_skips 0/,
		'with --redis: every row applied once');
	$node->safe_psql('payments', "DELETE FROM guid_consumer_offsets WHERE consumer = 'fast_$$'");
	like(run_consumer(@fast), qr/messages 10000 applied 0 duplicates 0 fast_path_skips 10000/,
		'rewound: Redis filters every processed guid before PostgreSQL');
	is(applied('applied_fast'), $expected, 'the table holds exactly the committed rows');
	# Redis forgets (a failover, the TTL): the PostgreSQL dedupe still holds
	my $rh = $ENV{GUID_REDIS};
	my ($host, $port) = split /:/, $rh;
	IPC::Run::run([ 'sh', '-c', "redis-cli -h $host -p $port --scan --pattern 'guid:seen:fast_$$:*' | xargs -r -n 500 redis-cli -h $host -p $port DEL" ], '>', \my $o2)
	  or die 'redis-cli failed';
	$node->safe_psql('payments', "DELETE FROM guid_consumer_offsets WHERE consumer = 'fast_$$'");
	like(run_consumer(@fast), qr/messages 10000 applied 0 duplicates 10000 fast_path_skips 0/,
		'Redis emptied and rewound: the PostgreSQL dedupe catches every duplicate');
}

$node->stop;
done_testing();
