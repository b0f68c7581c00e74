-- Casts, decoding of known values, guid_from_parts bounds, JSON.
BEGIN;
SELECT plan(31);

-- 2026-11-26 12:00:00.123 UTC is 60004800123 ms after 2025-01-01; node 7,
-- sequence 42: (60004800123 << 22) | (7 << 12) | 42.
SELECT is(guid_from_parts('2026-11-26 12:00:00.123+00', 7, 42)::bigint, 251678373175128106,
	'guid_from_parts packs a known value');
SELECT is(guid_timestamp('251678373175128106'), '2026-11-26 12:00:00.123+00'::timestamptz,
	'guid_timestamp decodes it');
SELECT is(guid_node('251678373175128106'), 7, 'guid_node decodes it');
SELECT is(guid_sequence('251678373175128106'), 42, 'guid_sequence decodes it');
SELECT is((SELECT row(created_at, node_id, sequence)::text FROM guid_decode('251678373175128106')),
	'("2026-11-26 12:00:00.123+00",7,42)', 'guid_decode returns (created_at, node_id, sequence)');
SELECT is((SELECT row(created_at, node_id, sequence)::text FROM guid_decode('0')),
	'("2025-01-01 00:00:00+00",0,0)', 'guid 0 is the epoch');
SELECT is((SELECT row(created_at, node_id, sequence)::text FROM guid_decode('9223372036854775807')),
	'("2094-09-07 15:47:35.551+00",1023,4095)', 'the largest guid decodes to the last millisecond');
SELECT is(guid_from_parts('2094-09-07 15:47:35.551+00', 1023, 4095)::bigint, 9223372036854775807,
	'guid_from_parts accepts the upper bounds');
SELECT is(guid_from_parts('2025-01-01 00:00:00+00', 0, 0)::bigint, 0::bigint,
	'guid_from_parts accepts the lower bounds');
SELECT is(guid_from_parts('2026-01-01 00:00:00.0009+00', 1, 1), guid_from_parts('2026-01-01 00:00:00+00', 1, 1),
	'guid_from_parts rounds the time down to the millisecond');
SELECT is(guid_from_parts(guid_timestamp('251678373175128106'), guid_node('251678373175128106'),
						  guid_sequence('251678373175128106'))::bigint,
	251678373175128106, 'decode and from_parts are inverse');

SELECT throws_ok($$SELECT guid_from_parts('2026-01-01', -1, 0)$$, '22003',
	'node id -1 is out of range for type guid', 'node -1 is refused');
SELECT throws_ok($$SELECT guid_from_parts('2026-01-01', 1024, 0)$$, '22003',
	'node id 1024 is out of range for type guid', 'node 1024 is refused');
SELECT throws_ok($$SELECT guid_from_parts('2026-01-01', 0, -1)$$, '22003',
	'sequence -1 is out of range for type guid', 'sequence -1 is refused');
SELECT throws_ok($$SELECT guid_from_parts('2026-01-01', 0, 4096)$$, '22003',
	'sequence 4096 is out of range for type guid', 'sequence 4096 is refused');
SELECT throws_ok($$SELECT guid_from_parts('2024-12-31 23:59:59.999+00', 0, 0)$$, '22008',
	'timestamp out of range for type guid', 'a time before 2025 is refused');
SELECT throws_ok($$SELECT guid_from_parts('2094-09-07 15:47:35.552+00', 0, 0)$$, '22008',
	'timestamp out of range for type guid', 'a time after the last millisecond is refused');
SELECT throws_ok($$SELECT guid_from_parts('infinity', 0, 0)$$, '22008',
	'timestamp out of range for type guid', 'infinity is refused');

-- Casts: explicit both ways with bigint, explicit to timestamptz.
SELECT is('251678373175128106'::guid::bigint, 251678373175128106, 'guid -> bigint');
SELECT is(251678373175128106::bigint::guid, '251678373175128106'::guid, 'bigint -> guid');
SELECT is('251678373175128106'::guid::timestamptz, '2026-11-26 12:00:00.123+00'::timestamptz, 'guid -> timestamptz');
SELECT throws_ok($$SELECT (-1)::bigint::guid$$, '22003',
	'value "-1" is out of range for type guid', 'a negative bigint does not cast');
SELECT is(
	(SELECT string_agg(c, ' ' ORDER BY c) FROM
		(SELECT format_type(castsource, NULL) || '->' || format_type(casttarget, NULL) || ':' || castcontext::text AS c
		 FROM pg_cast WHERE castsource = 'guid'::regtype OR casttarget = 'guid'::regtype) s),
	'bigint->guid:e guid->bigint:e guid->timestamp with time zone:e integer->guid:e timestamp with time zone->guid:e',
	'all casts are explicit');
CREATE TEMP TABLE cast_target (id guid);
SELECT throws_ok($$INSERT INTO cast_target VALUES (5::bigint)$$, '42804', NULL,
	'a bigint is not silently assigned to a guid column');

-- JSON: a guid is a string, since JavaScript numbers cannot hold 64 bits.
SELECT is(to_json('251678373175128106'::guid)::text, '"251678373175128106"', 'to_json gives a JSON string');
SELECT is(to_jsonb('9223372036854775807'::guid), '"9223372036854775807"'::jsonb, 'to_jsonb gives a JSON string');
SELECT is(json_build_object('id', '42'::guid)::text, '{"id" : "42"}', 'json_build_object quotes it');
SELECT is((SELECT row_to_json(r)::text FROM (SELECT '7'::guid AS id) r), '{"id":"7"}', 'row_to_json quotes it');
SELECT is(('"251678373175128106"'::json #>> '{}')::guid::bigint, 251678373175128106, 'and the string reads back');

-- Decoding functions are immutable and parallel safe; generators are volatile.
SELECT is((SELECT string_agg(proname || ':' || provolatile::text || proparallel::text, ' ' ORDER BY proname)
		   FROM pg_proc WHERE proname IN ('guid_decode', 'guid_timestamp', 'guid_node', 'guid_sequence', 'guid_from_parts')),
	'guid_decode:is guid_from_parts:is guid_node:is guid_sequence:is guid_timestamp:is',
	'decoding functions are IMMUTABLE PARALLEL SAFE');
SELECT is((SELECT string_agg(DISTINCT proname || ':' || provolatile::text, ' ')
		   FROM pg_proc WHERE proname IN ('guid_next', 'guid_uuid')),
	'guid_next:v guid_uuid:v', 'generating functions (every guid_next overload) are VOLATILE');

SELECT * FROM finish();
ROLLBACK;
