-- Index support: btree (including time ranges), hash, BRIN, hash join and
-- hash partitioning, each checked in the plan and in the result.
BEGIN;
SELECT plan(19);

\ir plan_of.psql

-- 10,000 rows, one a minute going back from now(), on assorted nodes.
CREATE TABLE events (id guid PRIMARY KEY, n int NOT NULL);
INSERT INTO events
	SELECT guid_from_parts(now() - g * interval '1 minute', g % 1024, g % 4096), g
	FROM generate_series(1, 10000) g;
ANALYZE events;

-- The idiom of the issue, with the planner free to choose.
SELECT matches(pg_temp.plan_of($$SELECT * FROM events WHERE id >= now() - interval '1 hour'$$),
	'(Index Scan|Index Only Scan|Bitmap Index Scan) (using|on) events_pkey',
	'WHERE id >= now() - interval ''1 hour'' is an index scan on the guid primary key');
SELECT matches(pg_temp.plan_of($$SELECT * FROM events WHERE id >= now() - interval '1 hour'$$),
	'Index Cond: \(id >= \(now\(\) - ''01:00:00''::interval\)\)',
	'... with the time bound as the index condition');
SELECT is((SELECT count(*) FROM events WHERE id >= now() - interval '1 hour'),
	(SELECT count(*) FROM events WHERE guid_timestamp(id) >= now() - interval '1 hour'),
	'... and it returns exactly the rows created in the last hour');
SELECT is((SELECT count(*) FROM events
		   WHERE id >= now() - interval '3 hours' AND id < now() - interval '2 hours'),
	(SELECT count(*) FROM events
	 WHERE guid_timestamp(id) >= now() - interval '3 hours' AND guid_timestamp(id) < now() - interval '2 hours'),
	'a closed-open time window returns exactly the rows created in it');

SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT matches(pg_temp.plan_of($$SELECT n FROM events WHERE id = '251678373175128106'$$),
	'Index Scan using events_pkey', 'btree equality lookup');
SELECT matches(pg_temp.plan_of($$SELECT id FROM events ORDER BY id DESC LIMIT 5$$),
	'Index Only Scan Backward using events_pkey', 'ORDER BY id DESC LIMIT reads the btree backwards');
SELECT is((SELECT array_agg(n) FROM (SELECT n FROM events ORDER BY id DESC LIMIT 3) s),
	ARRAY[1, 2, 3], 'the newest rows come first');
RESET enable_bitmapscan;

-- Hash index.
CREATE TABLE by_hash (id guid, n int);
INSERT INTO by_hash SELECT id, n FROM events;
CREATE INDEX by_hash_idx ON by_hash USING hash (id);
ANALYZE by_hash;
SELECT matches(pg_temp.plan_of($$SELECT n FROM by_hash WHERE id = '251678373175128106'$$),
	'by_hash_idx', 'hash index is used for =');
SELECT is((SELECT n FROM by_hash WHERE id = (SELECT id FROM events WHERE n = 4242)), 4242,
	'hash index lookup finds the row');

-- BRIN minmax.
CREATE TABLE by_brin (id guid, n int);
INSERT INTO by_brin SELECT id, n FROM events ORDER BY id;
CREATE INDEX by_brin_idx ON by_brin USING brin (id) WITH (pages_per_range = 1);
ANALYZE by_brin;
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM by_brin WHERE id >= '251678373175128106'::guid$$),
	'Bitmap Index Scan on by_brin_idx', 'BRIN index is used for a range');
SELECT is((SELECT count(*) FROM by_brin WHERE id >= (SELECT id FROM events WHERE n = 100)), 100::bigint,
	'BRIN range scan returns the right rows');

-- min/max from the index
SELECT matches(pg_temp.plan_of($$SELECT max(id) FROM events$$),
	'Index Only Scan Backward using events_pkey', 'max(id) reads the end of the btree');
SELECT is((SELECT max(id) FROM events), (SELECT id FROM events WHERE n = 1), 'max(id) is the newest row');

-- Hash join and merge join.
RESET enable_seqscan;
SET LOCAL enable_mergejoin = off;
SET LOCAL enable_nestloop = off;
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM events e JOIN by_hash h USING (id)$$),
	'Hash Join', 'guid = guid can drive a hash join');
SELECT is((SELECT count(*) FROM events e JOIN by_hash h USING (id)), 10000::bigint, 'hash join matches every row');
RESET enable_mergejoin;
SET LOCAL enable_hashjoin = off;
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM events e JOIN by_hash h USING (id)$$),
	'Merge Join', 'guid = guid can drive a merge join');
SELECT is((SELECT count(*) FROM events e JOIN by_hash h USING (id)), 10000::bigint, 'merge join matches every row');

-- Hash partitioning uses the extended hash.
CREATE TABLE parted (id guid) PARTITION BY HASH (id);
CREATE TABLE parted_0 PARTITION OF parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO parted SELECT id FROM events;
SELECT ok((SELECT count(*) FROM parted_0) > 0 AND (SELECT count(*) FROM parted_1) > 0,
	'hash partitioning spreads guids over both partitions');
SELECT is((SELECT count(*) FROM parted WHERE id = (SELECT id FROM events WHERE n = 77)), 1::bigint,
	'partition pruning on guid = finds the row');

SELECT * FROM finish();
ROLLBACK;
