# guid.audit altered under a running publisher: the output plugin reads the
# four columns by name, so a column added, dropped, added back, or one of the
# four dropped and added back (a new attribute number) changes nothing: rows
# keep streaming, exactly once, and the server never restarts.  A row the
# plugin cannot decode (a column renamed away, retyped, or null) stops the
# publisher cleanly: state "error" with the reason in guid.status, nothing
# confirmed past that transaction, no crash; dropping the slot is the way out.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t015_$$";
my $node = guid_node('alter', node_id => 27, conf => kafka_conf($brokers, $topic));
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start: '
	  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

sub audit_guids
{
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
}

# Rows in three transactions, one of them rolled back.
sub load
{
	my $tag = shift;
	$node->safe_psql('postgres', "SELECT guid_next('$tag') FROM generate_series(1, 5)");
	$node->safe_psql('postgres', "BEGIN; SELECT guid_next('$tag') FROM generate_series(1, 4); ROLLBACK;");
	$node->safe_psql('postgres', "BEGIN; SELECT guid_next('$tag') FROM generate_series(1, 3); COMMIT;");
}

sub not_restarted
{
	my $what = shift;
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started,
		"$what: the server did not restart");
}

load('before');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(), 'rows stream before any ALTER');

# --- Extra columns ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'ALTER TABLE guid.audit ADD COLUMN note text');
load('added');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(),
	'a column added: rows keep streaming, exactly the committed ones');
not_restarted('a column added');

$node->safe_psql('postgres', 'ALTER TABLE guid.audit DROP COLUMN note');
load('dropped');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(),
	'a column dropped: rows keep streaming');

$node->safe_psql('postgres', "ALTER TABLE guid.audit ADD COLUMN note text DEFAULT 'x', ADD COLUMN weight int8");
load('added_back');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(),
	'the column added back, and another: rows keep streaming');

# --- One of the four at a new attribute number -----------------------------------------------------
$node->safe_psql('postgres',
	'ALTER TABLE guid.audit DROP COLUMN node_id, ADD COLUMN node_id int4 NOT NULL DEFAULT 0');
is($node->safe_psql('postgres',
		"SELECT attnum > 4 FROM pg_attribute WHERE attrelid = 'guid.audit'::regclass AND attname = 'node_id'"),
	't', 'node_id now has a new attribute number');
load('moved');
my $msgs = wait_published($node, $brokers, $topic);
is_deeply(kafka_guids($msgs), audit_guids(), 'node_id dropped and added back: rows keep streaming');
my @moved = grep { $_->{key} eq 'moved' } @$msgs;
is(scalar @moved, 8, 'the eight committed rows written after it');
is_deeply([ sort { $a <=> $b } map { $_->{value}{node_id} } @moved ], [ (27) x 8 ],
	'their node_id is read from the new column');
is($moved[0]{value}{created_at},
	$node->safe_psql('postgres',
		"SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM guid.audit WHERE guid = '$moved[0]{value}{guid}'"),
	'and created_at from its own');
not_restarted('after every ALTER');
ok(!$node->log_contains('terminated by signal'), 'no server process crashed');

# --- A row that cannot be decoded: a clean error, nothing confirmed past it ---------------------------
# $setup makes guid.audit unreadable for the plugin, $write commits a row with it;
# $restore undoes the change, then the slot is dropped (the way out).
sub undecodable
{
	my ($what, $setup, $write, $restore, $message) = @_;
	$node->safe_psql('postgres', $setup);
	my $bad = $node->safe_psql('postgres', $write);
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok($node->poll_query_until('postgres',
			"SELECT publisher_state = 'error' AND publisher_error ~ 'cannot decode guid.audit' FROM guid.status"),
		"$what: publisher state error")
	  or diag($node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
	like($node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'), $message,
		"$what: guid.status says why");
	is($node->safe_psql('postgres',
			"SELECT confirmed_flush_lsn < '$lsn' FROM pg_replication_slots WHERE slot_name = 'guid_audit'"),
		't', "$what: the slot is not confirmed past the transaction");
	ok(!grep({ $_ eq $bad } @{ kafka_read($brokers, $topic, 1) }), "$what: the row is not in Kafka");
	not_restarted($what);
	ok(!$node->log_contains('terminated by signal'), "$what: no server process crashed");

	$node->safe_psql('postgres', "DELETE FROM guid.audit WHERE guid = '$bad'");
	$node->safe_psql('postgres', $restore);
	# the walsender holds the slot while a retry streams: try until it is free
	$node->poll_query_until('postgres', "SELECT true FROM pg_drop_replication_slot('guid_audit')")
	  or die 'could not drop the slot';
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or die 'publisher did not stream again';
	my $fresh = $node->safe_psql('postgres', "SELECT guid_next('after_$what')");
	my $seen = 0;
	for (1 .. 600)
	{
		last if $seen = grep { $_ eq $fresh } @{ kafka_read($brokers, $topic, 1) };
		select(undef, undef, undef, 0.2);
	}
	ok($seen, "$what: after the slot is dropped, new rows stream again");
}

undecodable('service renamed',
	'ALTER TABLE guid.audit RENAME COLUMN service TO svc',
	"INSERT INTO guid.audit (guid, node_id, created_at, svc) SELECT g, 27, guid_timestamp(g), 'renamed' FROM guid_next() g RETURNING guid",
	'ALTER TABLE guid.audit RENAME COLUMN svc TO service',
	qr/guid.audit has no column "service"/);
undecodable('node_id retyped',
	'ALTER TABLE guid.audit ALTER COLUMN node_id TYPE int8',
	# guid_next(service) refuses a retyped column itself (07_audit); a plain
	# INSERT puts such a row in the WAL.
	"INSERT INTO guid.audit (guid, node_id, created_at, service) SELECT g, 27, guid_timestamp(g), 'retyped' FROM guid_next() g RETURNING guid",
	'ALTER TABLE guid.audit ALTER COLUMN node_id TYPE int4',
	qr/column "node_id" of guid.audit has type bigint, not integer/);
undecodable('a null service',
	'ALTER TABLE guid.audit ALTER COLUMN service DROP NOT NULL',
	"INSERT INTO guid.audit (guid, node_id, created_at) SELECT g, 27, guid_timestamp(g) FROM guid_next() g RETURNING guid",
	'ALTER TABLE guid.audit ALTER COLUMN service SET NOT NULL',
	qr/guid.audit row with a null service/);

$node->stop;
done_testing();
