-- guid_next() and guid_uuid() in one backend, DEFAULT columns, and the
-- status view.  (Concurrency, clock steps and restarts are in test/tap/.)
BEGIN;
SELECT plan(17);

CREATE TEMP TABLE issued AS
	SELECT n, guid_next() AS id FROM generate_series(1, 200000) n;

SELECT is((SELECT count(DISTINCT id) FROM issued), 200000::bigint, '200,000 IDs are distinct');
SELECT is((SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY n) AS prev FROM issued) s WHERE id <= prev),
	0::bigint, 'each is greater than the one before');
SELECT is((SELECT count(*) FROM issued WHERE guid_node(id) <> current_setting('guid.node_id')::int),
	0::bigint, 'all carry this node''s id');
SELECT ok((SELECT max(guid_sequence(id)) FROM issued) <= 4095, 'sequences stay within 12 bits');
SELECT ok(guid_timestamp(guid_next()) BETWEEN clock_timestamp() - interval '1 minute'
		  AND clock_timestamp() + current_setting('guid.max_clock_ahead')::interval,
	'a new guid carries the current time, within guid.max_clock_ahead');

-- DEFAULT column
CREATE TEMP TABLE payments (id guid PRIMARY KEY DEFAULT guid_next(), amount int);
INSERT INTO payments (amount) SELECT g FROM generate_series(1, 1000) g;
SELECT is((SELECT count(*) FROM payments), 1000::bigint, 'DEFAULT guid_next() fills a primary key');
SELECT ok((SELECT min(id) FROM payments) > (SELECT max(id) FROM issued), 'later inserts get greater IDs');

-- guid_uuid: RFC 9562 version 7, variant 10, increasing, current time.
CREATE TEMP TABLE uuids AS SELECT n, guid_uuid() AS u FROM generate_series(1, 50000) n;
SELECT is((SELECT count(*) FROM uuids WHERE substr(u::text, 15, 1) <> '7'), 0::bigint, 'version nibble is 7');
SELECT is((SELECT count(*) FROM uuids WHERE substr(u::text, 20, 1) NOT IN ('8', '9', 'a', 'b')), 0::bigint,
	'variant bits are 10');
SELECT is((SELECT count(*) FROM (SELECT u, lag(u) OVER (ORDER BY n) AS prev FROM uuids) s WHERE u <= prev),
	0::bigint, 'UUIDs increase');
SELECT ok((SELECT to_timestamp(('x' || lpad(replace(substr(u::text, 1, 13), '-', ''), 16, '0'))::bit(64)::bigint / 1000.0)
		   FROM uuids WHERE n = 1)
		  BETWEEN clock_timestamp() - interval '1 minute'
		  AND clock_timestamp() + current_setting('guid.max_clock_ahead')::interval,
	'the UUID''s 48-bit timestamp is the current Unix time in ms');
SELECT is((SELECT count(*) FROM uuids
		   WHERE (('x' || substr(replace(u::text, '-', ''), 17, 4))::bit(16)::int >> 4) & 1023
				 <> current_setting('guid.node_id')::int),
	0::bigint, 'the node id sits in the top of rand_b');
-- Rebuild the guid behind the last UUID: (unix ms - epoch, node, rand_a).
SELECT ok(guid_next()::bigint >
		  (SELECT ((('x' || replace(substr(u::text, 1, 13), '-', ''))::bit(48)::bigint - 1735689600000) << 22)
				  | (current_setting('guid.node_id')::bigint << 12)
				  | ('x' || substr(u::text, 16, 3))::bit(12)::bigint
		   FROM uuids ORDER BY n DESC LIMIT 1),
	'guid_next and guid_uuid share one increasing generator');

-- Status
SELECT is((SELECT mode FROM guid.status), 'standalone', 'status: standalone mode');
SELECT is((SELECT node_id FROM guid.status), current_setting('guid.node_id')::int, 'status: node id');
SELECT ok((SELECT ids_issued FROM guid.status) >= 251000, 'status: IDs issued are counted');
SELECT is((SELECT exhausted_at FROM guid.status), '2094-09-07 15:47:35.552+00'::timestamptz,
	'status: the 41-bit millisecond field runs out on 2094-09-07');

SELECT * FROM finish();
ROLLBACK;
