-- Operators: guid against guid, guid against timestamptz, and the catalog
-- properties the planner relies on.
BEGIN;
SELECT plan(31);

SELECT ok('1'::guid = '1'::guid, '=');
SELECT ok('1'::guid <> '2'::guid, '<>');
SELECT ok('1'::guid < '2'::guid, '<');
SELECT ok('2'::guid <= '2'::guid, '<=');
SELECT ok('3'::guid > '2'::guid, '>');
SELECT ok('3'::guid >= '3'::guid, '>=');
SELECT ok(NOT ('2'::guid < '1'::guid), '< is false the other way');
SELECT ok('9223372036854775807'::guid > '0'::guid, 'the largest guid sorts last');

SELECT is(
	(SELECT oprcom::regoperator::text FROM pg_operator WHERE oid = '<(guid,guid)'::regoperator),
	'>(guid,guid)', '< has commutator >');
SELECT is(
	(SELECT oprnegate::regoperator::text FROM pg_operator WHERE oid = '<(guid,guid)'::regoperator),
	'>=(guid,guid)', '< has negator >=');
SELECT ok(
	(SELECT oprcanhash AND oprcanmerge FROM pg_operator WHERE oid = '=(guid,guid)'::regoperator),
	'= is HASHES and MERGES');
SELECT is(
	(SELECT oprrest::text || ' ' || oprjoin::text FROM pg_operator WHERE oid = '<(guid,timestamptz)'::regoperator),
	'scalarltsel scalarltjoinsel', 'cross-type < has selectivity estimators');

-- guid order is bigint order
SELECT is(
	(SELECT array_agg(id ORDER BY id)::bigint[] FROM (VALUES ('10'::guid), ('2'), ('9223372036854775807'), ('0')) v(id)),
	ARRAY[0, 2, 10, 9223372036854775807]::bigint[], 'ORDER BY sorts as bigint');

-- guid against timestamptz: the timestamp stands for the first guid of the
-- first millisecond not before it.
SELECT ok(guid_from_parts('2026-01-01 00:00:00+00', 0, 0) = '2026-01-01 00:00:00+00'::timestamptz,
	'the first guid of a millisecond equals it');
SELECT ok(guid_from_parts('2026-01-01 00:00:00+00', 3, 9) > '2026-01-01 00:00:00+00'::timestamptz,
	'a later guid of that millisecond is greater');
SELECT ok(guid_from_parts('2026-01-01 00:00:00+00', 3, 9) >= '2026-01-01 00:00:00+00'::timestamptz,
	'created at ts: id >= ts');
SELECT ok(guid_from_parts('2025-12-31 23:59:59.999+00', 1023, 4095) < '2026-01-01 00:00:00+00'::timestamptz,
	'created before ts: id < ts');
SELECT ok(guid_from_parts('2026-01-01 00:00:00+00', 1023, 4095) < '2026-01-01 00:00:00.0005+00'::timestamptz,
	'created in the millisecond before a sub-millisecond ts: id < ts');
SELECT ok(guid_from_parts('2026-01-01 00:00:00.001+00', 0, 0) >= '2026-01-01 00:00:00.0005+00'::timestamptz,
	'created in the next millisecond: id >= ts');
SELECT ok('0'::guid > '-infinity'::timestamptz AND '9223372036854775807'::guid < 'infinity'::timestamptz,
	'infinities lie outside every guid');
SELECT ok('2026-01-01 00:00:00+00'::timestamptz < guid_from_parts('2026-01-01 00:00:00+00', 0, 1),
	'timestamptz < guid (commutated)');
SELECT ok('2026-01-01 00:00:00+00'::timestamptz <= guid_from_parts('2026-01-01 00:00:00+00', 0, 0)
	AND '2026-01-01 00:00:00+00'::timestamptz >= guid_from_parts('2026-01-01 00:00:00+00', 0, 0)
	AND '2026-01-01 00:00:00+00'::timestamptz = guid_from_parts('2026-01-01 00:00:00+00', 0, 0)
	AND '2026-01-01 00:00:01+00'::timestamptz <> guid_from_parts('2026-01-01 00:00:00+00', 0, 0)
	AND '2026-01-01 00:00:01+00'::timestamptz > guid_from_parts('2026-01-01 00:00:00+00', 0, 0),
	'timestamptz <= >= = <> > guid');
SELECT ok(guid_from_parts('2026-01-01 00:00:00+00', 0, 0) <= '2026-01-01 00:00:00+00'::timestamptz
	AND guid_from_parts('2026-01-01 00:00:00+00', 0, 1) <> '2026-01-01 00:00:00+00'::timestamptz,
	'guid <= and <> timestamptz');

-- id >= ts and id < ts agree with guid_timestamp(id) on many values.
SELECT is(
	(SELECT count(*) FROM
		(SELECT guid_from_parts('2026-01-01'::timestamptz + (g * 7919 % 100000) * interval '1 microsecond' * 13,
								g % 1024, g % 4096) AS id,
				'2026-01-01'::timestamptz + (g * 104729 % 100000) * interval '1 microsecond' * 13 AS ts
		 FROM generate_series(1, 20000) g) s
	 WHERE (id >= ts) IS DISTINCT FROM (guid_timestamp(id) >= ts)
		OR (id < ts) IS DISTINCT FROM (guid_timestamp(id) < ts)),
	0::bigint, 'id >= ts means created at or after ts, id < ts created before, for 20000 pairs');

-- The operator families are complete and valid.
-- guid_ops and guid_hash_ops hold guid against each type, not the other
-- types' own operators (see sql/guid--1.3--1.4.sql: those would change plans
-- of queries without guid), so amvalidate() calls them incomplete for just
-- that; every operator they hold is checked by 08_family_laws.sql.
SELECT is(
	(SELECT array_agg(DISTINCT format_type(amoplefttype, NULL) || ' ' || format_type(amoprighttype, NULL)
					  ORDER BY format_type(amoplefttype, NULL) || ' ' || format_type(amoprighttype, NULL))
	 FROM pg_amop ao JOIN pg_opfamily f ON f.oid = ao.amopfamily WHERE f.opfname = 'guid_ops'),
	ARRAY['bigint guid', 'guid bigint', 'guid guid', 'guid timestamp with time zone', 'timestamp with time zone guid'],
	'btree family: operators of guid against guid, bigint and timestamptz, and no others');
SELECT is(
	(SELECT array_agg(DISTINCT format_type(amoplefttype, NULL) || ' ' || format_type(amoprighttype, NULL)
					  ORDER BY format_type(amoplefttype, NULL) || ' ' || format_type(amoprighttype, NULL))
	 FROM pg_amop ao JOIN pg_opfamily f ON f.oid = ao.amopfamily WHERE f.opfname = 'guid_hash_ops'),
	ARRAY['bigint guid', 'guid bigint', 'guid guid'],
	'hash family: = of guid against guid and bigint, and no others');
SELECT ok(amvalidate((SELECT oid FROM pg_opclass WHERE opcname = 'guid_minmax_ops')), 'BRIN opclass validates');
SELECT is(
	(SELECT count(*) FROM pg_amop ao JOIN pg_opfamily f ON f.oid = ao.amopfamily
	 WHERE f.opfname = 'guid_ops' AND ao.amoplefttype = 'guid'::regtype AND ao.amoprighttype = 'timestamptz'::regtype),
	5::bigint, 'the btree family holds the five guid/timestamptz operators');
SELECT is(
	(SELECT amproc::text FROM pg_amproc p JOIN pg_opfamily f ON f.oid = p.amprocfamily
	 WHERE f.opfname = 'guid_hash_ops' AND p.amprocnum = 2 AND p.amproclefttype = 'guid'::regtype),
	'guid_hash_extended', 'the hash family has the extended 64-bit hash');
SELECT is(guid_hash_extended('12345', 0), hashint8extended(12345, 0), 'extended hash matches bigint''s');
SELECT is((SELECT row(min(id), max(id))::text FROM (VALUES ('10'::guid), ('2'), ('9223372036854775807')) v(id)),
	'(2,9223372036854775807)', 'min() and max() aggregates');

SELECT * FROM finish();
ROLLBACK;
