# The audit stream against the real broker of test/services: committed
# guid_next(service) rows reach Kafka exactly once with the right JSON,
# rolled-back ones never; one PostgreSQL transaction is never split; a
# 100,000-row transaction goes through; idle WAL is confirmed; the
# idempotent forms write one audit row per key.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t009_$$";
my $conf = kafka_conf($brokers, $topic) . "guid.redis = '$ENV{GUID_REDIS}'\n";
my $node = guid_node('stream', node_id => 21, conf => $conf);

$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start: '
	  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
is($node->safe_psql('postgres', "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'guid_audit'"),
	'guid', 'the publisher created slot guid_audit with the guid plugin');

# --- Committed and rolled back --------------------------------------------------------
my @committed;
my %xact_of;
for my $t (1 .. 10)
{
	my $out = $node->safe_psql('postgres', qq{
		BEGIN;
		SELECT txid_current();
		SELECT guid_next('payment') FROM generate_series(1, $t);
		COMMIT;});
	my ($xid, @ids) = split /\n/, $out;
	push @committed, @ids;
	$xact_of{$_} = [ $xid, scalar @ids ] for @ids;
}
for my $t (1 .. 5)
{
	$node->safe_psql('postgres', "BEGIN; SELECT guid_next('payment') FROM generate_series(1, 7); ROLLBACK;");
}
# a rolled-back subtransaction inside a committed one
my $out = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT guid_next('booking');
	SAVEPOINT s;
	SELECT guid_next('booking') FROM generate_series(1, 3);
	ROLLBACK TO SAVEPOINT s;
	SELECT guid_next('booking');
	COMMIT;});
my @sub = split /\n/, $out;
push @committed, $sub[0], $sub[-1];
$node->safe_psql('postgres', 'SELECT count(guid_next()) FROM generate_series(1, 1000)');
my ($err) = ($node->psql('postgres', "SELECT guid_next('')", on_error_stop => 1))[2];
like($err, qr/invalid service name/, 'an empty service is an error');
($err) = ($node->psql('postgres', "SELECT guid_next(repeat('s', 51))"))[2];
like($err, qr/1 to 50 characters/, 'a 51-character service is an error');
($err) = ($node->psql('postgres', "SELECT guid_next(E'a\\tb')"))[2];
like($err, qr/control characters/, 'a service with a control character is an error');

is($node->safe_psql('postgres', 'SELECT count(*) FROM guid.audit'), scalar @committed,
	'guid.audit holds exactly the committed rows (plain guid_next() and bad services wrote none)');

my $msgs = wait_published($node, $brokers, $topic);
is_deeply(kafka_guids($msgs), [ sort { $a <=> $b } @committed ],
	'Kafka (read_committed) holds exactly the committed guids, each once');

# --- The message ---------------------------------------------------------------------------
my ($m) = grep { $_->{value}{guid} eq $committed[0] } @$msgs;
is($m->{key}, 'payment', 'key = service');
is_deeply([ sort keys %{ $m->{value} } ],
	[qw(created_at guid guid_node_id lsn node_id service system_identifier xid)], 'JSON has exactly the eight fields');
like($m->{raw}, qr/"guid":"$committed[0]"/, 'guid is a decimal string');
is($m->{value}{node_id}, 21, 'node_id (of the publishing cluster)');
is($m->{value}{guid_node_id}, 21, 'guid_node_id (in the guid\'s bits)');
like($m->{raw}, qr/"system_identifier":"\d+"/, 'system_identifier is a decimal string');
is($m->{value}{system_identifier},
	$node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	'system_identifier is the publishing cluster\'s');
is($m->{value}{created_at},
	$node->safe_psql('postgres',
		"SELECT to_char(guid_timestamp('$committed[0]'::guid) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
	'created_at is the guid\'s time in RFC 3339, UTC');
is($m->{value}{service}, 'payment', 'service');
is($m->{value}{xid}, $xact_of{ $committed[0] }[0], 'xid is the committing transaction\'s');
is($m->{lsn}, $m->{value}{lsn}, 'the lsn header carries the LSN');
like($m->{lsn}, qr{^[0-9A-F]+/[0-9A-F]+$}, 'an LSN');

my %by_lsn;
push @{ $by_lsn{ $_->{value}{lsn} } }, $_ for @$msgs;
my $whole = 1;
for my $id (keys %xact_of)
{
	my ($mm) = grep { $_->{value}{guid} eq $id } @$msgs;
	my @same = @{ $by_lsn{ $mm->{value}{lsn} } };
	$whole = 0 if @same != $xact_of{$id}[1] || grep { $_->{value}{xid} != $xact_of{$id}[0] } @same;
}
ok($whole, 'each transaction\'s rows share one LSN and xid, all of them together');

my $st = $node->safe_psql('postgres',
	'SELECT rows_published >= ' . scalar(@committed)
	  . ' AND last_published_lsn IS NOT NULL AND kafka_commit_ms > 0 AND publisher_error IS NULL'
	  . ' AND transactions_published >= 11 FROM guid.status');
is($st, 't', 'guid.status counts rows and transactions, shows the LSN and the commit latency');

# --- 100,000 rows in one transaction --------------------------------------------------------
$node->safe_psql('postgres', "SELECT count(guid_next('bulk')) FROM generate_series(1, 100000)");
$msgs = wait_published($node, $brokers, $topic, 300);
my @bulk = grep { $_->{key} eq 'bulk' } @$msgs;
my %bulk_ids = map { $_->{value}{guid} => 1 } @bulk;
is(scalar @bulk, 100000, 'a 100,000-row transaction: 100,000 messages');
is(scalar keys %bulk_ids, 100000, '... all distinct');
my %bulk_lsn = map { $_->{value}{lsn} => 1 } @bulk;
is(scalar keys %bulk_lsn, 1, '... one transaction, one LSN');
is_deeply(kafka_guids($msgs),
	[ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ],
	'the topic still equals guid.audit exactly');

# --- Idempotency keys write one audit row per key ---------------------------------------------
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM guid.audit');
my $k1 = $node->safe_psql('postgres', "SELECT guid_next('pay', 'stream-k1-$$')");
is($node->safe_psql('postgres', "SELECT guid_next('pay', 'stream-k1-$$')"), $k1, 'same key, same guid');
$node->safe_psql('postgres', "SELECT guid_next('pay', ARRAY['stream-k2-$$', 'stream-k3-$$', 'stream-k1-$$'])");
is($node->safe_psql('postgres', 'SELECT count(*) FROM guid.audit') - $before, 3,
	'three keys, four calls: three audit rows');
# the winner rolled back: the retry records the guid it returns
$node->safe_psql('postgres', "BEGIN; SELECT guid_next('pay', 'stream-k4-$$'); ROLLBACK;");
my $k4 = $node->safe_psql('postgres', "SELECT guid_next('pay', 'stream-k4-$$')");
is($node->safe_psql('postgres', "SELECT count(*) FROM guid.audit WHERE guid = '$k4'"), 1,
	'a retry after the first transaction rolled back records the guid');
$msgs = wait_published($node, $brokers, $topic);
is_deeply(kafka_guids($msgs),
	[ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ],
	'the topic equals guid.audit exactly, idempotent rows included');

# --- Idle WAL is confirmed -------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE TABLE filler AS SELECT g FROM generate_series(1, 200000) g');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok($node->poll_query_until('postgres',
		"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'guid_audit'"),
	'WAL without audit rows is confirmed: the slot does not pin it');
$msgs = kafka_read($brokers, $topic);
is_deeply(kafka_guids($msgs),
	[ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ],
	'and nothing was added to the topic for it');

$node->stop;
done_testing();
