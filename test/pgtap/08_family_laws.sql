-- The btree family guid_ops (guid and timestamptz) is one total order: a
-- property test.  Random guids and timestamps, most of them inside a few
-- milliseconds (on boundaries and between them), are checked for the laws a
-- btree family promises (trichotomy, commutators, transitivity across every
-- pair of types), and random pairs of predicates on an indexed table must
-- return the same rows by index scan, bitmap scan and seq scan, through a
-- partial index, and on a range-partitioned table with and without pruning.
-- The seed is random and printed in every description, so a failure can be
-- replayed with SELECT setseed(<seed>).
BEGIN;
SELECT plan(17);

CREATE TEMP TABLE seed AS SELECT round(random()::numeric * 2 - 1, 6)::float8 AS s;
SELECT setseed((SELECT s FROM seed));
CREATE FUNCTION pg_temp.seed() RETURNS text LANGUAGE sql AS $$ SELECT 'seed ' || s FROM seed $$;

-- The dense region: milliseconds -2 .. 3 around m0.
CREATE FUNCTION pg_temp.m0() RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$ SELECT '2026-01-01 00:00:00+00'::timestamptz $$;

-- A random timestamp: on a millisecond boundary, one microsecond either side
-- of one, or anywhere inside a millisecond; now and then far away.
CREATE FUNCTION pg_temp.rand_ts() RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
	r float8 := random();
	base timestamptz := pg_temp.m0() + (floor(random() * 6) - 2) * interval '1 millisecond';
BEGIN
	IF r < 0.03 THEN RETURN '-infinity'; END IF;
	IF r < 0.06 THEN RETURN 'infinity'; END IF;
	IF r < 0.08 THEN RETURN '2024-06-01 00:00:00.0005+00'; END IF;	-- before the guid epoch
	IF r < 0.10 THEN RETURN '2100-01-01 00:00:00+00'; END IF;		-- after the last guid millisecond
	IF r < 0.45 THEN RETURN base; END IF;
	IF r < 0.55 THEN RETURN base + interval '1 microsecond'; END IF;
	IF r < 0.65 THEN RETURN base - interval '1 microsecond'; END IF;
	RETURN base + (1 + floor(random() * 999)) * interval '1 microsecond';
END
$$;

-- A random guid of the dense region: the first, the last or any guid of its millisecond.
CREATE FUNCTION pg_temp.rand_guid() RETURNS guid LANGUAGE plpgsql AS $$
DECLARE
	r float8 := random();
	ms timestamptz := pg_temp.m0() + (floor(random() * 6) - 2) * interval '1 millisecond';
BEGIN
	IF r < 0.3 THEN RETURN guid_from_parts(ms, 0, 0); END IF;
	IF r < 0.4 THEN RETURN guid_from_parts(ms, 0, 1); END IF;
	IF r < 0.5 THEN RETURN guid_from_parts(ms, 1023, 4095); END IF;
	RETURN guid_from_parts(ms, floor(random() * 1024)::int, floor(random() * 4096)::int);
END
$$;

--------------------------------------------------------------------------
-- The laws, over every pair and triple of 180 random values of the
-- family's three types: guid, bigint (the same order as guid, negative
-- numbers included) and timestamptz.  bigint and timestamptz are never
-- compared with each other.
--------------------------------------------------------------------------

-- A random bigint: a guid's value, or one that no guid has.
CREATE FUNCTION pg_temp.rand_bigint() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	r float8 := random();
BEGIN
	IF r < 0.05 THEN RETURN -1; END IF;
	IF r < 0.10 THEN RETURN -(1::bigint << 22); END IF;
	IF r < 0.13 THEN RETURN -9223372036854775808; END IF;
	IF r < 0.16 THEN RETURN 9223372036854775807; END IF;
	IF r < 0.20 THEN RETURN 0; END IF;
	RETURN pg_temp.rand_guid()::bigint;
END
$$;

CREATE TEMP TABLE v (i int PRIMARY KEY, k "char" NOT NULL, g guid, b bigint, t timestamptz);
INSERT INTO v SELECT i, 'g', pg_temp.rand_guid(), NULL, NULL FROM generate_series(1, 60) i;
INSERT INTO v SELECT i, 'b', NULL, pg_temp.rand_bigint(), NULL FROM generate_series(61, 100) i;
INSERT INTO v SELECT i, 't', NULL, NULL, pg_temp.rand_ts() FROM generate_series(101, 180) i;

-- Every operator of the family (and the other types' own operators, which
-- must agree with it) and its support function, on each pair: the query is
-- written out for the seven pairs of types that have operators.
DO $$
DECLARE
	ops text[] := ARRAY['<', '<=', '=', '<>', '>=', '>'];
	names text[] := ARRAY['lt', 'le', 'eq', 'ne', 'ge', 'gt'];
	cmp jsonb := '{"gg": "guid_cmp", "gb": "guid_cmp_bigint", "bg": "bigint_cmp_guid",
				   "bb": "btint8cmp", "gt": "guid_cmp_timestamptz", "tg": "timestamptz_cmp_guid",
				   "tt": "timestamptz_cmp"}';
	pairs text[] := ARRAY['gg', 'gb', 'bg', 'bb', 'gt', 'tg', 'tt'];
	q text := 'CREATE TEMP TABLE p AS SELECT a.i AS a, b.i AS b';
	arm text;
	pr text;
BEGIN
	FOR n IN 1 .. 6 LOOP
		arm := '';
		FOREACH pr IN ARRAY pairs LOOP
			arm := arm || format(' WHEN %L THEN a.%s %s b.%s', pr, substr(pr, 1, 1), ops[n], substr(pr, 2, 1));
		END LOOP;
		q := q || format(', CASE a.k::text || b.k::text %s END AS %s', arm, names[n]);
	END LOOP;
	arm := '';
	FOREACH pr IN ARRAY pairs LOOP
		arm := arm || format(' WHEN %L THEN %s(a.%s, b.%s)', pr, cmp ->> pr, substr(pr, 1, 1), substr(pr, 2, 1));
	END LOOP;
	-- bigint against timestamptz has no operator: the planner never compares them.
	q := q || format(', sign(CASE a.k::text || b.k::text %s END) AS c FROM v a CROSS JOIN v b'
					 ' WHERE a.k::text || b.k::text NOT IN (''bt'', ''tb'')', arm);
	EXECUTE q;
END
$$;
CREATE INDEX ON p (a);
CREATE INDEX ON p (b);
ANALYZE p;

SELECT is((SELECT count(*) FROM p WHERE lt::int + eq::int + gt::int <> 1), 0::bigint,
	'trichotomy: exactly one of <, =, > holds for every pair (' || pg_temp.seed() || ')');
SELECT is((SELECT count(*) FROM p
		   WHERE le <> (lt OR eq) OR ge <> (gt OR eq) OR ne <> NOT eq
			  OR c <> CASE WHEN lt THEN -1 WHEN eq THEN 0 ELSE 1 END), 0::bigint,
	'<=, >=, <> and the support functions agree with <, =, > (' || pg_temp.seed() || ')');
SELECT is((SELECT count(*) FROM p x JOIN p y ON y.a = x.b AND y.b = x.a
		   WHERE x.lt <> y.gt OR x.le <> y.ge OR x.eq <> y.eq), 0::bigint,
	'a < b exactly when b > a, across types (' || pg_temp.seed() || ')');
SELECT is((SELECT count(*) FROM p x JOIN p y ON y.a = x.b JOIN p z ON z.a = x.a AND z.b = y.b
		   WHERE (x.eq AND y.eq AND NOT z.eq)
			  OR (x.le AND y.le AND NOT z.le)
			  OR (x.lt AND y.le AND NOT z.lt)
			  OR (x.le AND y.lt AND NOT z.lt)), 0::bigint,
	'=, <= and < are transitive over every triple, across types (' || pg_temp.seed() || ')');
SELECT ok((SELECT count(*) FROM p JOIN v a ON a.i = p.a JOIN v b ON b.i = p.b
		   WHERE p.eq AND a.g IS NOT NULL AND b.t IS NOT NULL) > 0
	   AND (SELECT count(*) FROM p JOIN v a ON a.i = p.a JOIN v b ON b.i = p.b
			WHERE p.eq AND a.g IS NOT NULL AND b.b IS NOT NULL) > 0,
	'the sample holds guids equal to timestamps and to bigints (' || pg_temp.seed() || ')');
SELECT is((SELECT count(*) FROM p JOIN v a ON a.i = p.a JOIN v b ON b.i = p.b
		   WHERE a.k = 'g' AND b.k = 'b' AND (p.c <> CASE WHEN a.g::bigint < b.b THEN -1 WHEN a.g::bigint = b.b THEN 0 ELSE 1 END)), 0::bigint,
	'guid against bigint is bigint order (' || pg_temp.seed() || ')');

-- What the cross-type operators mean.
SELECT is((SELECT count(*) FROM v a CROSS JOIN v b
		   WHERE a.g IS NOT NULL AND b.t IS NOT NULL
			 AND ((a.g >= b.t) <> (guid_timestamp(a.g) >= b.t)
				  OR (a.g < b.t) <> (guid_timestamp(a.g) < b.t))), 0::bigint,
	'id >= ts is "created at or after ts" and id < ts "created before ts" (' || pg_temp.seed() || ')');
SELECT is((SELECT count(*) FROM v a CROSS JOIN v b
		   WHERE a.g IS NOT NULL AND b.t IS NOT NULL AND isfinite(b.t)
			 AND date_trunc('milliseconds', b.t) <> b.t
			 AND ((a.g > b.t) <> (guid_timestamp(a.g) > b.t)
				  OR (a.g <= b.t) <> (guid_timestamp(a.g) <= b.t)
				  OR a.g = b.t)), 0::bigint,
	'off a millisecond boundary, id > ts is "created after ts", id <= ts "created at or before ts", and no guid equals ts ('
	|| pg_temp.seed() || ')');
SELECT is((SELECT count(*) FROM v a CROSS JOIN v b
		   WHERE a.g IS NOT NULL AND b.t IS NOT NULL AND isfinite(b.t) AND b.t > '2025-01-01+00'
			 AND b.t < '2094-01-01+00' AND date_trunc('milliseconds', b.t) = b.t
			 AND (a.g = b.t) <> (a.g = guid_from_parts(b.t, 0, 0))), 0::bigint,
	'on a millisecond boundary, id = ts holds for the first guid of that millisecond only (' || pg_temp.seed() || ')');

--------------------------------------------------------------------------
-- Index scan, bitmap scan and seq scan agree on random predicate pairs.
--------------------------------------------------------------------------

CREATE TEMP TABLE events (id guid PRIMARY KEY);
INSERT INTO events
	SELECT DISTINCT guid_from_parts(pg_temp.m0() + ms * interval '1 millisecond', node, seq)
	FROM generate_series(-3, 3) ms,
		 (VALUES (0, 0), (0, 1), (1, 0), (512, 7), (1023, 4094), (1023, 4095)) e(node, seq);
INSERT INTO events SELECT pg_temp.rand_guid() FROM generate_series(1, 300) ON CONFLICT DO NOTHING;
INSERT INTO events	-- a background of an hour either side, so the index is worth using
	SELECT guid_from_parts(pg_temp.m0() + g * interval '1 second', g & 1023, 0)
	FROM generate_series(-3600, 3600) g WHERE g <> 0 ON CONFLICT DO NOTHING;
ANALYZE events;

-- A random literal of either type, and a random comparison.
CREATE FUNCTION pg_temp.rand_lit() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r float8 := random();
BEGIN
	IF r < 0.6 THEN RETURN quote_literal(pg_temp.rand_ts()::text) || '::timestamptz'; END IF;
	IF r < 0.8 THEN RETURN quote_literal(pg_temp.rand_bigint()::text) || '::bigint'; END IF;
	RETURN quote_literal(pg_temp.rand_guid()::text) || '::guid';
END
$$;
CREATE FUNCTION pg_temp.rand_op() RETURNS text LANGUAGE sql AS $$
	SELECT (ARRAY['<', '<=', '=', '>=', '>'])[1 + floor(random() * 5)::int]
$$;

-- The ids a WHERE clause selects from tbl, with only one scan method allowed.
CREATE FUNCTION pg_temp.ids(tbl text, cond text, method text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	result text;
BEGIN
	PERFORM set_config('enable_seqscan', (method = 'seq')::text, true);
	PERFORM set_config('enable_indexscan', (method = 'index')::text, true);
	PERFORM set_config('enable_indexonlyscan', (method = 'index')::text, true);
	PERFORM set_config('enable_bitmapscan', (method = 'bitmap')::text, true);
	EXECUTE format('SELECT coalesce(string_agg(id::text, '','' ORDER BY id), '''') FROM %s WHERE %s', tbl, cond)
		INTO result;
	PERFORM set_config('enable_seqscan', 'on', true);
	PERFORM set_config('enable_indexscan', 'on', true);
	PERFORM set_config('enable_indexonlyscan', 'on', true);
	PERFORM set_config('enable_bitmapscan', 'on', true);
	RETURN result;
END
$$;

\ir plan_of.psql

-- n random conditions of the given shape; returns those where the three
-- scan methods disagree.
CREATE FUNCTION pg_temp.disagreements(shape text, n int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	cond text;
	bad text[] := '{}';
	s text;
	idx text;
	bmp text;
BEGIN
	FOR k IN 1 .. n LOOP
		cond := CASE shape
			WHEN 'and' THEN format('id %s %s AND id %s %s', pg_temp.rand_op(), pg_temp.rand_lit(),
								   pg_temp.rand_op(), pg_temp.rand_lit())
			WHEN 'or' THEN format('id %s %s OR id %s %s', pg_temp.rand_op(), pg_temp.rand_lit(),
								  pg_temp.rand_op(), pg_temp.rand_lit())
			WHEN 'any' THEN format('id = ANY (ARRAY[%s, %s]::timestamptz[])',
								   quote_literal(pg_temp.rand_ts()::text), quote_literal(pg_temp.rand_ts()::text))
			WHEN 'in' THEN format('id IN (%s::timestamptz, %s::timestamptz, %s::timestamptz)',
								  quote_literal(pg_temp.rand_ts()::text), quote_literal(pg_temp.rand_ts()::text),
								  quote_literal(pg_temp.rand_ts()::text))
			END;
		s := pg_temp.ids('events', cond, 'seq');
		idx := pg_temp.ids('events', cond, 'index');
		bmp := pg_temp.ids('events', cond, 'bitmap');
		IF s IS DISTINCT FROM idx OR s IS DISTINCT FROM bmp THEN
			bad := bad || cond;
		END IF;
	END LOOP;
	RETURN bad;
END
$$;

-- The index is really used when the seq scan is off.
SET LOCAL enable_seqscan = off;
SELECT matches(pg_temp.plan_of($$SELECT id FROM events WHERE id > '2026-01-01 00:00:00.0001+00'::timestamptz
								  AND id >= '2026-01-01 00:00:00.0009+00'::timestamptz$$),
	'Index Only Scan using events_pkey|Index Scan using events_pkey|Bitmap Index Scan on events_pkey',
	'the table''s time ranges are index scans');
RESET enable_seqscan;

SELECT is(pg_temp.disagreements('and', 400), '{}'::text[],
	'400 random pairs of AND-ed bounds: index, bitmap and seq scans return the same rows (' || pg_temp.seed() || ')');
SELECT is(pg_temp.disagreements('or', 100), '{}'::text[],
	'100 random OR-ed pairs: the three scans agree (' || pg_temp.seed() || ')');
SELECT is(pg_temp.disagreements('any', 100) || pg_temp.disagreements('in', 100), '{}'::text[],
	'200 random id = ANY(timestamptz[]) and IN lists: the three scans agree (' || pg_temp.seed() || ')');

-- The two queries that went wrong before the family was a total order.
SELECT is(pg_temp.ids('events', $$id = '2026-01-01 00:00:00.0001+00'::timestamptz
								  AND id = '2026-01-01 00:00:00.0009+00'::timestamptz$$, 'index'),
	pg_temp.ids('events', $$id = '2026-01-01 00:00:00.0001+00'::timestamptz
							AND id = '2026-01-01 00:00:00.0009+00'::timestamptz$$, 'seq'),
	'two equalities inside one millisecond: index scan = seq scan');

--------------------------------------------------------------------------
-- A partial index is used only where its predicate is implied.
--------------------------------------------------------------------------

-- Without a primary key, so that only the partial index can serve.
CREATE TEMP TABLE plain AS SELECT id FROM events;
ANALYZE plain;

CREATE FUNCTION pg_temp.partial_disagreements(n int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	pred text;
	cond text;
	bad text[] := '{}';
	t1 timestamptz;
	t2 timestamptz;
BEGIN
	FOR k IN 1 .. n LOOP
		-- Half the time both bounds lie in one millisecond.
		t1 := pg_temp.rand_ts();
		t2 := CASE WHEN random() < 0.5 AND isfinite(t1)
				   THEN date_trunc('milliseconds', t1) + floor(random() * 1000) * interval '1 microsecond'
				   ELSE pg_temp.rand_ts() END;
		pred := format('id %s %L::timestamptz', pg_temp.rand_op(), t1);
		cond := format('id %s %L::timestamptz', pg_temp.rand_op(), t2);
		EXECUTE format('CREATE INDEX plain_partial ON plain (id) WHERE %s', pred);
		IF pg_temp.ids('plain', cond, 'index') IS DISTINCT FROM pg_temp.ids('plain', cond, 'seq')
		   OR pg_temp.ids('plain', cond, 'bitmap') IS DISTINCT FROM pg_temp.ids('plain', cond, 'seq') THEN
			bad := bad || (pred || ' / ' || cond);
		END IF;
		DROP INDEX plain_partial;
	END LOOP;
	RETURN bad;
END
$$;
SELECT is(pg_temp.partial_disagreements(150), '{}'::text[],
	'150 random partial indexes WHERE id op ts1, queried WHERE id op ts2: the same rows as a seq scan ('
	|| pg_temp.seed() || ')');

--------------------------------------------------------------------------
-- Range partitions on a guid key, pruned by timestamptz.
--------------------------------------------------------------------------

CREATE TEMP TABLE parted (id guid) PARTITION BY RANGE (id);
DO $$
BEGIN
	FOR ms IN -3 .. 3 LOOP
		EXECUTE format('CREATE TEMP TABLE parted_%s PARTITION OF parted FOR VALUES FROM (%L) TO (%L)',
					   ms + 3,
					   guid_from_parts(pg_temp.m0() + ms * interval '1 millisecond', 0, 0),
					   guid_from_parts(pg_temp.m0() + (ms + 1) * interval '1 millisecond', 0, 0));
	END LOOP;
END
$$;
CREATE TEMP TABLE parted_rest PARTITION OF parted DEFAULT;
INSERT INTO parted SELECT id FROM events;

CREATE FUNCTION pg_temp.pruning_disagreements(n int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	cond text;
	bad text[] := '{}';
	pruned text;
	unpruned text;
BEGIN
	FOR k IN 1 .. n LOOP
		cond := format('id %s %s AND id %s %s', pg_temp.rand_op(), pg_temp.rand_lit(),
					   pg_temp.rand_op(), pg_temp.rand_lit());
		pruned := pg_temp.ids('parted', cond, 'seq');
		PERFORM set_config('enable_partition_pruning', 'off', true);
		unpruned := pg_temp.ids('parted', cond, 'seq');
		PERFORM set_config('enable_partition_pruning', 'on', true);
		IF pruned IS DISTINCT FROM unpruned OR pruned IS DISTINCT FROM pg_temp.ids('events', cond, 'seq') THEN
			bad := bad || cond;
		END IF;
	END LOOP;
	RETURN bad;
END
$$;
SELECT is(pg_temp.pruning_disagreements(200), '{}'::text[],
	'200 random bound pairs on a range-partitioned guid key: pruning returns the same rows ('
	|| pg_temp.seed() || ')');
SELECT doesnt_match(pg_temp.plan_of($$SELECT id FROM parted WHERE id >= '2026-01-01 00:00:00.0005+00'::timestamptz
								 AND id < '2026-01-01 00:00:00.0015+00'::timestamptz$$),
	'parted_0|parted_rest', 'a time window prunes the partitions outside it');

SELECT * FROM finish();
ROLLBACK;
