/* sql/guid--1.3--1.4.sql: privileges, guid against bigint, time ranges on BRIN, guid_from_time */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION guid UPDATE TO '1.4'" to load this file. \quit

-- guid_status() shows the last errors and the ZooKeeper session id: it is
-- for the roles that may read guid.status, not for PUBLIC (CREATE FUNCTION
-- grants EXECUTE to PUBLIC).  A view's caller needs EXECUTE on the functions
-- the view calls, so pg_monitor gets it too.
REVOKE EXECUTE ON FUNCTION guid_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guid_status() TO pg_monitor;

-- guid_next(service) and the idempotent forms write guid.audit through the
-- executor's lower layers (extension/audit.c): no SQL, no search_path, no
-- privilege check, so they need not run as the extension's owner.  Without
-- SECURITY DEFINER there is no search_path to pin either (the pin cost a
-- backend about a microsecond per call).  Callers still cannot write
-- guid.audit themselves.
ALTER FUNCTION guid_next(text) SECURITY INVOKER RESET search_path;
ALTER FUNCTION guid_next(text, text) SECURITY INVOKER RESET search_path;
ALTER FUNCTION guid_next(text, text[]) SECURITY INVOKER RESET search_path;

--------------------------------------------------------------------------
-- guid against bigint: WHERE id = 251831565259141120, and a bigint parameter
-- from a driver, as index scans.  A guid is a non-negative int8 and guid
-- order is int8 order, so core's int8 functions compare and hash both, and
-- the hash of a guid is the hash of the same bigint.
--------------------------------------------------------------------------

CREATE FUNCTION guid_eq_bigint(guid, bigint) RETURNS bool
	AS 'int8eq' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_ne_bigint(guid, bigint) RETURNS bool
	AS 'int8ne' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_lt_bigint(guid, bigint) RETURNS bool
	AS 'int8lt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_le_bigint(guid, bigint) RETURNS bool
	AS 'int8le' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_gt_bigint(guid, bigint) RETURNS bool
	AS 'int8gt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_ge_bigint(guid, bigint) RETURNS bool
	AS 'int8ge' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_cmp_bigint(guid, bigint) RETURNS int4
	AS 'btint8cmp' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION bigint_eq_guid(bigint, guid) RETURNS bool
	AS 'int8eq' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bigint_ne_guid(bigint, guid) RETURNS bool
	AS 'int8ne' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bigint_lt_guid(bigint, guid) RETURNS bool
	AS 'int8lt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bigint_le_guid(bigint, guid) RETURNS bool
	AS 'int8le' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bigint_gt_guid(bigint, guid) RETURNS bool
	AS 'int8gt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bigint_ge_guid(bigint, guid) RETURNS bool
	AS 'int8ge' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bigint_cmp_guid(bigint, guid) RETURNS int4
	AS 'btint8cmp' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE OPERATOR = (
	LEFTARG = guid, RIGHTARG = bigint, FUNCTION = guid_eq_bigint,
	COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES
);
CREATE OPERATOR <> (
	LEFTARG = guid, RIGHTARG = bigint, FUNCTION = guid_ne_bigint,
	COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR < (
	LEFTARG = guid, RIGHTARG = bigint, FUNCTION = guid_lt_bigint,
	COMMUTATOR = >, NEGATOR = >=, RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR <= (
	LEFTARG = guid, RIGHTARG = bigint, FUNCTION = guid_le_bigint,
	COMMUTATOR = >=, NEGATOR = >, RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR > (
	LEFTARG = guid, RIGHTARG = bigint, FUNCTION = guid_gt_bigint,
	COMMUTATOR = <, NEGATOR = <=, RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR >= (
	LEFTARG = guid, RIGHTARG = bigint, FUNCTION = guid_ge_bigint,
	COMMUTATOR = <=, NEGATOR = <, RESTRICT = scalargesel, JOIN = scalargejoinsel
);
CREATE OPERATOR = (
	LEFTARG = bigint, RIGHTARG = guid, FUNCTION = bigint_eq_guid,
	COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES
);
CREATE OPERATOR <> (
	LEFTARG = bigint, RIGHTARG = guid, FUNCTION = bigint_ne_guid,
	COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR < (
	LEFTARG = bigint, RIGHTARG = guid, FUNCTION = bigint_lt_guid,
	COMMUTATOR = >, NEGATOR = >=, RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR <= (
	LEFTARG = bigint, RIGHTARG = guid, FUNCTION = bigint_le_guid,
	COMMUTATOR = >=, NEGATOR = >, RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR > (
	LEFTARG = bigint, RIGHTARG = guid, FUNCTION = bigint_gt_guid,
	COMMUTATOR = <, NEGATOR = <=, RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR >= (
	LEFTARG = bigint, RIGHTARG = guid, FUNCTION = bigint_ge_guid,
	COMMUTATOR = <=, NEGATOR = <, RESTRICT = scalargesel, JOIN = scalargejoinsel
);

-- guid_ops holds guid's own operators and those between guid and each other
-- type (timestamptz, bigint), but not the other types' own operators (only
-- their comparison functions, see below), nor bigint against timestamptz.  The planner merges two equalities into one
-- equivalence class only when their operators belong to the same btree
-- families: int8 = int8 or timestamptz = timestamptz in guid_ops would make
-- them differ from int8 = int4 or timestamptz = date, and change plans of
-- queries that involve no guid at all (no derived x = 5 on the other side
-- of a join, no partition pruning).  Without them the family is incomplete
-- (amvalidate() says so): the planner then does not compare two bounds of
-- the other types with each other and keeps both, which is always correct.
-- For the same reason guid = bigint is not MERGES: a merge join would sort
-- the bigint side by an operator of guid_ops.  It HASHES.
ALTER OPERATOR FAMILY guid_ops USING btree ADD
	OPERATOR 1 < (guid, bigint),
	OPERATOR 2 <= (guid, bigint),
	OPERATOR 3 = (guid, bigint),
	OPERATOR 4 >= (guid, bigint),
	OPERATOR 5 > (guid, bigint),
	FUNCTION 1 (guid, bigint) guid_cmp_bigint(guid, bigint),
	OPERATOR 1 < (bigint, guid),
	OPERATOR 2 <= (bigint, guid),
	OPERATOR 3 = (bigint, guid),
	OPERATOR 4 >= (bigint, guid),
	OPERATOR 5 > (bigint, guid),
	FUNCTION 1 (bigint, guid) bigint_cmp_guid(bigint, guid),
	FUNCTION 1 (bigint, bigint) pg_catalog.btint8cmp(bigint, bigint),
	FUNCTION 2 (bigint, bigint) pg_catalog.btint8sortsupport(internal);

-- Up to 1.3 the family also held timestamptz's own operators: out, as
-- above.  Their comparison function stays, as bigint's is added: an index
-- scan for id = ANY(ARRAY[...]) or id IN (...) sorts the array's elements
-- with it, and fails without it.
ALTER OPERATOR FAMILY guid_ops USING btree DROP
	OPERATOR 1 (timestamptz, timestamptz),
	OPERATOR 2 (timestamptz, timestamptz),
	OPERATOR 3 (timestamptz, timestamptz),
	OPERATOR 4 (timestamptz, timestamptz),
	OPERATOR 5 (timestamptz, timestamptz);

-- The hash functions of bigint, so that a hash join can hash the bigint side.
ALTER OPERATOR FAMILY guid_hash_ops USING hash ADD
	OPERATOR 1 = (guid, bigint),
	OPERATOR 1 = (bigint, guid),
	FUNCTION 1 (bigint, bigint) pg_catalog.hashint8(bigint),
	FUNCTION 2 (bigint, bigint) pg_catalog.hashint8extended(bigint, bigint);

-- BRIN minmax answers time ranges and bigint bounds too: brin_minmax
-- looks the cross-type operators up in the family by their right-hand type.
ALTER OPERATOR FAMILY guid_minmax_ops USING brin ADD
	OPERATOR 1 < (guid, timestamptz),
	OPERATOR 2 <= (guid, timestamptz),
	OPERATOR 3 = (guid, timestamptz),
	OPERATOR 4 >= (guid, timestamptz),
	OPERATOR 5 > (guid, timestamptz),
	OPERATOR 1 < (guid, bigint),
	OPERATOR 2 <= (guid, bigint),
	OPERATOR 3 = (guid, bigint),
	OPERATOR 4 >= (guid, bigint),
	OPERATOR 5 > (guid, bigint);

--------------------------------------------------------------------------
-- From numbers and times to guids.
--------------------------------------------------------------------------

-- 5::guid, like 5::bigint::guid (a negative number is out of range).
CREATE FUNCTION guid_from_int4(integer) RETURNS guid
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (integer AS guid) WITH FUNCTION guid_from_int4(integer);

-- The smallest guid created at or after ts: id >= guid_from_time(ts) is
-- id >= ts.  For range partition bounds, which must be of the key's type.
CREATE FUNCTION guid_from_time(timestamptz) RETURNS guid
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION guid_from_time(timestamptz) IS 'the smallest guid created at or after a time: for partition bounds';
CREATE CAST (timestamptz AS guid) WITH FUNCTION guid_from_time(timestamptz);

--------------------------------------------------------------------------
-- 1.4 changed what =, <>, <= and > mean between a guid and a timestamp
-- that lies inside a millisecond (extension/guid_ops.c): such a timestamp no
-- longer equals the next millisecond's first guid.  (>= and < are as they
-- were.)  Indexes and constraints whose expressions use those operators
-- were built with the old meaning: name them, so that they are rebuilt or
-- checked.  The library in use already has the new meaning.
--------------------------------------------------------------------------
DO $$
DECLARE
	dep record;
BEGIN
	FOR dep IN
		SELECT DISTINCT d.classid::regclass AS catalog,
			   CASE WHEN d.classid = 'pg_class'::regclass THEN d.objid::regclass::text
					WHEN d.classid = 'pg_constraint'::regclass THEN
						(SELECT format('%s on %s', c.conname, c.conrelid::regclass) FROM pg_constraint c WHERE c.oid = d.objid)
					ELSE d.objid::text END AS object
		FROM pg_depend d
		JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass AND d.refobjid = o.oid
		WHERE o.oprname IN ('=', '<>', '<=', '>')
		  AND ((o.oprleft = 'guid'::regtype AND o.oprright = 'timestamptz'::regtype)
			OR (o.oprleft = 'timestamptz'::regtype AND o.oprright = 'guid'::regtype))
		  AND d.classid IN ('pg_class'::regclass, 'pg_constraint'::regclass)
	LOOP
		RAISE WARNING 'guid 1.4: % % compares a guid with a timestamptz by =, <>, <= or >, whose meaning changed for timestamps inside a millisecond',
			CASE WHEN dep.catalog = 'pg_class'::regclass THEN 'index' ELSE 'constraint' END, dep.object
			USING HINT = 'REINDEX an index; check a constraint again (ALTER TABLE ... VALIDATE CONSTRAINT after NOT VALID, or recreate it).  See README.md, "Upgrading to 1.4".';
	END LOOP;
END
$$;
