-- The SQL people write without thinking: bigint and integer comparisons (by
-- hand and as driver parameters), time ranges on BRIN, integer casts, and
-- range partitions by month with guid_from_time().
BEGIN;
SELECT plan(32);

\ir plan_of.psql

CREATE TABLE events (id guid PRIMARY KEY, n int NOT NULL);
INSERT INTO events
	SELECT guid_from_parts('2026-06-01 00:00:00+00'::timestamptz + g * interval '1 minute', g % 1024, g % 4096), g
	FROM generate_series(1, 20000) g;
ANALYZE events;

--------------------------------------------------------------------------
-- guid against bigint and integer
--------------------------------------------------------------------------

SELECT is((SELECT n FROM events WHERE id = (SELECT id FROM events WHERE n = 777)::bigint), 777,
	'WHERE id = <bigint> finds the row');
SELECT is((SELECT n FROM events WHERE (SELECT id FROM events WHERE n = 778)::bigint = id), 778,
	'WHERE <bigint> = id finds the row');
SELECT matches(pg_temp.plan_of(format('SELECT n FROM events WHERE id = %s', (SELECT id FROM events WHERE n = 777))),
	'Index Scan using events_pkey',
	'WHERE id = 26... (a bare integer literal, typed bigint) is an index scan');
SELECT matches(pg_temp.plan_of(format('SELECT n FROM events WHERE id IN (%s, %s)',
		(SELECT id FROM events WHERE n = 1), (SELECT id FROM events WHERE n = 2))),
	'(Index Scan using|Bitmap Index Scan on) events_pkey', 'WHERE id IN (<bigint>, <bigint>) uses the index');
SELECT is((SELECT count(*) FROM events WHERE id >= (SELECT id FROM events WHERE n = 19001)::bigint), 1000::bigint,
	'a bigint range bound returns the right rows');

-- What JDBC setLong and psycopg's int send: a bigint parameter.
PREPARE by_long(bigint) AS SELECT n FROM events WHERE id = $1;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT matches(pg_temp.plan_of('EXECUTE by_long(1)'), 'Index Scan using events_pkey',
	'a bigint parameter (generic plan) is an index scan');
SELECT is((SELECT n FROM events WHERE id = (SELECT id FROM events WHERE n = 4242)::bigint), 4242, 'and finds the row');
PREPARE by_int(int) AS SELECT n FROM events WHERE id = $1;
SELECT matches(pg_temp.plan_of('EXECUTE by_int(1)'), 'Index Scan using events_pkey',
	'an integer parameter is an index scan too');
RESET plan_cache_mode;
SELECT is((SELECT count(*) FROM events WHERE id = 5), 0::bigint, 'WHERE id = 5 (an integer) works');

SELECT is(5::guid, '5'::guid, '5::guid: integers cast explicitly');
SELECT throws_ok('SELECT (-5)::guid', '22003', NULL, 'a negative integer is out of range for guid');
SELECT throws_ok('SELECT (-5)::bigint::guid', '22003', NULL, 'so is a negative bigint');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_cast WHERE castsource IN ('integer'::regtype, 'bigint'::regtype, 'timestamptz'::regtype)
						AND casttarget = 'guid'::regtype AND castcontext <> 'e'),
	'casts into guid are explicit only (an integer or a time never turns into an id unasked)');

-- Hash: the hash of a guid is the hash of the same bigint.
SELECT is((SELECT count(*) FROM events WHERE guid_hash(id) <> hashint8(id::bigint)
			OR guid_hash_extended(id, 42) <> hashint8extended(id::bigint, 42)), 0::bigint,
	'hash(guid) = hash(bigint) for every row, 32 and 64 bits');
CREATE TABLE longs (l bigint);
INSERT INTO longs SELECT id::bigint FROM events WHERE n % 10 = 0;
ANALYZE longs;
SET LOCAL enable_mergejoin = off;
SET LOCAL enable_nestloop = off;
SELECT matches(pg_temp.plan_of('SELECT count(*) FROM events JOIN longs ON id = l'), 'Hash Join',
	'guid = bigint can drive a hash join');
SELECT is((SELECT count(*) FROM events JOIN longs ON id = l), 2000::bigint, '... matching every row');
RESET enable_mergejoin;
SELECT ok((SELECT NOT oprcanmerge FROM pg_operator WHERE oid = '=(guid,bigint)'::regoperator),
	'guid = bigint is not mergejoinable (guid_ops does not sort bigints)');
SET LOCAL enable_hashjoin = off;
SELECT is((SELECT count(*) FROM events JOIN longs ON id = l), 2000::bigint, 'without a hash join it still matches every row');
RESET enable_hashjoin;
RESET enable_nestloop;
CREATE TABLE by_hash (id guid, n int);
INSERT INTO by_hash SELECT * FROM events;
CREATE INDEX by_hash_idx ON by_hash USING hash (id);
ANALYZE by_hash;
SET LOCAL enable_seqscan = off;
SELECT matches(pg_temp.plan_of(format('SELECT n FROM by_hash WHERE id = %s', (SELECT id FROM events WHERE n = 9)::bigint)),
	'by_hash_idx', 'a hash index answers WHERE id = <bigint>');
SELECT is((SELECT n FROM by_hash WHERE id = (SELECT id FROM events WHERE n = 9)::bigint), 9, '... with the row');
RESET enable_seqscan;

--------------------------------------------------------------------------
-- BRIN: time ranges and bigint bounds
--------------------------------------------------------------------------

CREATE TABLE by_brin (id guid, n int);
INSERT INTO by_brin SELECT id, n FROM events ORDER BY id;
CREATE INDEX by_brin_idx ON by_brin USING brin (id) WITH (pages_per_range = 1);
ANALYZE by_brin;
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM by_brin WHERE id >= '2026-06-14 00:00:00+00'::timestamptz$$),
	'Bitmap Index Scan on by_brin_idx', 'BRIN answers id >= timestamptz');
SELECT is((SELECT count(*) FROM by_brin WHERE id >= '2026-06-14 00:00:00.0005+00'::timestamptz
											AND id < '2026-06-14 10:00:00+00'::timestamptz),
	(SELECT count(*) FROM events WHERE guid_timestamp(id) >= '2026-06-14 00:00:00.0005+00'::timestamptz
									AND guid_timestamp(id) < '2026-06-14 10:00:00+00'::timestamptz),
	'... with exactly the rows created in the window');
SELECT matches(pg_temp.plan_of(format('SELECT count(*) FROM by_brin WHERE id < %s', (SELECT id FROM events WHERE n = 100)::bigint)),
	'Bitmap Index Scan on by_brin_idx', 'BRIN answers id < bigint');
SELECT is((SELECT count(*) FROM by_brin WHERE id < (SELECT id FROM events WHERE n = 100)::bigint), 99::bigint,
	'... with the right rows');

--------------------------------------------------------------------------
-- Monthly range partitions with guid_from_time()
--------------------------------------------------------------------------

SELECT is(guid_from_time('2027-01-01 00:00:00+00'), guid_from_parts('2027-01-01 00:00:00+00', 0, 0),
	'guid_from_time of an exact millisecond is its first guid');
SELECT is(guid_from_time('2027-01-01 00:00:00.0001+00'), guid_from_parts('2027-01-01 00:00:00.001+00', 0, 0),
	'guid_from_time rounds up: the smallest guid created at or after the time');
SELECT is('2027-01-01 00:00:00+00'::timestamptz::guid, guid_from_time('2027-01-01 00:00:00+00'),
	'timestamptz::guid is guid_from_time');
SELECT is(ARRAY[guid_from_time('2024-12-31 23:59:59.999+00'), guid_from_time('-infinity'), guid_from_time('2025-01-01 00:00:00+00')],
	ARRAY['0'::guid, '0', '0'], 'every guid is created at or after a time before the epoch: guid_from_time gives guid 0');
SELECT throws_ok($$SELECT guid_from_time('infinity')$$, '22008', NULL,
	'no guid is created at or after infinity: out of range');

CREATE TABLE payments (id guid NOT NULL, amount int) PARTITION BY RANGE (id);
CREATE TABLE payments_2026_06 PARTITION OF payments
	FOR VALUES FROM (guid_from_time('2026-06-01 00:00+00')) TO (guid_from_time('2026-07-01 00:00+00'));
CREATE TABLE payments_2026_07 PARTITION OF payments
	FOR VALUES FROM (guid_from_time('2026-07-01 00:00+00')) TO (guid_from_time('2026-08-01 00:00+00'));
INSERT INTO payments SELECT id, n FROM events;
SELECT is((SELECT count(*) FROM payments_2026_06),
	(SELECT count(*) FROM events WHERE guid_timestamp(id) < '2026-07-01 00:00+00'),
	'each month''s partition holds exactly the rows created in that month');
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM payments WHERE id >= '2026-07-03'::timestamptz$$),
	'payments_2026_07', 'a time range reaches the month it needs');
SELECT doesnt_match(pg_temp.plan_of($$SELECT count(*) FROM payments WHERE id >= '2026-07-03'::timestamptz$$),
	'payments_2026_06', '... and prunes the other');

SELECT * FROM finish();
ROLLBACK;
