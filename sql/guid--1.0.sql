/* sql/guid--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION guid" to load this file. \quit

--------------------------------------------------------------------------
-- The type
--------------------------------------------------------------------------

CREATE TYPE guid;

CREATE FUNCTION guid_in(cstring) RETURNS guid
	AS 'MODULE_PATHNAME', 'guid_in'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION guid_out(guid) RETURNS cstring
	AS 'MODULE_PATHNAME', 'guid_out'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION guid_recv(internal) RETURNS guid
	AS 'MODULE_PATHNAME', 'guid_recv'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The wire format is int8's; sending needs no check.
CREATE FUNCTION guid_send(guid) RETURNS bytea
	AS 'int8send'
	LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE guid (
	INPUT = guid_in,
	OUTPUT = guid_out,
	RECEIVE = guid_recv,
	SEND = guid_send,
	LIKE = pg_catalog.int8
);

COMMENT ON TYPE guid IS 'time-ordered 64-bit ID: 41 bits of milliseconds since 2025-01-01 UTC, 10 bits of node, 12 bits of sequence';

--------------------------------------------------------------------------
-- Comparison: a guid is a non-negative int8, so core's int8 functions
-- compare, hash and sort it (as contrib/isn does for its types).
--------------------------------------------------------------------------

CREATE FUNCTION guid_eq(guid, guid) RETURNS bool
	AS 'int8eq' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_ne(guid, guid) RETURNS bool
	AS 'int8ne' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_lt(guid, guid) RETURNS bool
	AS 'int8lt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_le(guid, guid) RETURNS bool
	AS 'int8le' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_gt(guid, guid) RETURNS bool
	AS 'int8gt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_ge(guid, guid) RETURNS bool
	AS 'int8ge' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_cmp(guid, guid) RETURNS int4
	AS 'btint8cmp' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_sortsupport(internal) RETURNS void
	AS 'btint8sortsupport' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION guid_hash(guid) RETURNS int4
	AS 'hashint8' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_hash_extended(guid, int8) RETURNS int8
	AS 'hashint8extended' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE OPERATOR = (
	LEFTARG = guid, RIGHTARG = guid, FUNCTION = guid_eq,
	COMMUTATOR = =, NEGATOR = <>,
	RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES
);
CREATE OPERATOR <> (
	LEFTARG = guid, RIGHTARG = guid, FUNCTION = guid_ne,
	COMMUTATOR = <>, NEGATOR = =,
	RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR < (
	LEFTARG = guid, RIGHTARG = guid, FUNCTION = guid_lt,
	COMMUTATOR = >, NEGATOR = >=,
	RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR <= (
	LEFTARG = guid, RIGHTARG = guid, FUNCTION = guid_le,
	COMMUTATOR = >=, NEGATOR = >,
	RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR > (
	LEFTARG = guid, RIGHTARG = guid, FUNCTION = guid_gt,
	COMMUTATOR = <, NEGATOR = <=,
	RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR >= (
	LEFTARG = guid, RIGHTARG = guid, FUNCTION = guid_ge,
	COMMUTATOR = <=, NEGATOR = <,
	RESTRICT = scalargesel, JOIN = scalargejoinsel
);

-- min() and max(), answered from a btree index when there is one.
CREATE FUNCTION guid_smaller(guid, guid) RETURNS guid
	AS 'int8smaller' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION guid_larger(guid, guid) RETURNS guid
	AS 'int8larger' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE AGGREGATE min(guid) (
	SFUNC = guid_smaller, STYPE = guid, SORTOP = <,
	COMBINEFUNC = guid_smaller, PARALLEL = SAFE
);
CREATE AGGREGATE max(guid) (
	SFUNC = guid_larger, STYPE = guid, SORTOP = >,
	COMBINEFUNC = guid_larger, PARALLEL = SAFE
);

--------------------------------------------------------------------------
-- Time ranges: guid against timestamptz.
--
-- How a timestamptz compares with a guid is defined in extension/guid_ops.c
-- (since 1.4: one total order, a timestamp inside a millisecond lies between
-- its guids and the next millisecond's), so that the operators belong in
-- the btree family and
--	   WHERE id >= ts   means "created at or after ts"
--	   WHERE id <  ts   means "created before ts"
-- exactly, as an index range scan on a guid primary key.
--------------------------------------------------------------------------

CREATE FUNCTION guid_cmp_timestamptz(guid, timestamptz) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_eq_timestamptz(guid, timestamptz) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_ne_timestamptz(guid, timestamptz) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_lt_timestamptz(guid, timestamptz) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_le_timestamptz(guid, timestamptz) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_gt_timestamptz(guid, timestamptz) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION guid_ge_timestamptz(guid, timestamptz) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION timestamptz_cmp_guid(timestamptz, guid) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION timestamptz_eq_guid(timestamptz, guid) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION timestamptz_ne_guid(timestamptz, guid) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION timestamptz_lt_guid(timestamptz, guid) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION timestamptz_le_guid(timestamptz, guid) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION timestamptz_gt_guid(timestamptz, guid) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION timestamptz_ge_guid(timestamptz, guid) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE OPERATOR = (
	LEFTARG = guid, RIGHTARG = timestamptz, FUNCTION = guid_eq_timestamptz,
	COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR <> (
	LEFTARG = guid, RIGHTARG = timestamptz, FUNCTION = guid_ne_timestamptz,
	COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR < (
	LEFTARG = guid, RIGHTARG = timestamptz, FUNCTION = guid_lt_timestamptz,
	COMMUTATOR = >, NEGATOR = >=, RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR <= (
	LEFTARG = guid, RIGHTARG = timestamptz, FUNCTION = guid_le_timestamptz,
	COMMUTATOR = >=, NEGATOR = >, RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR > (
	LEFTARG = guid, RIGHTARG = timestamptz, FUNCTION = guid_gt_timestamptz,
	COMMUTATOR = <, NEGATOR = <=, RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR >= (
	LEFTARG = guid, RIGHTARG = timestamptz, FUNCTION = guid_ge_timestamptz,
	COMMUTATOR = <=, NEGATOR = <, RESTRICT = scalargesel, JOIN = scalargejoinsel
);

CREATE OPERATOR = (
	LEFTARG = timestamptz, RIGHTARG = guid, FUNCTION = timestamptz_eq_guid,
	COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR <> (
	LEFTARG = timestamptz, RIGHTARG = guid, FUNCTION = timestamptz_ne_guid,
	COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR < (
	LEFTARG = timestamptz, RIGHTARG = guid, FUNCTION = timestamptz_lt_guid,
	COMMUTATOR = >, NEGATOR = >=, RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR <= (
	LEFTARG = timestamptz, RIGHTARG = guid, FUNCTION = timestamptz_le_guid,
	COMMUTATOR = >=, NEGATOR = >, RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR > (
	LEFTARG = timestamptz, RIGHTARG = guid, FUNCTION = timestamptz_gt_guid,
	COMMUTATOR = <, NEGATOR = <=, RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR >= (
	LEFTARG = timestamptz, RIGHTARG = guid, FUNCTION = timestamptz_ge_guid,
	COMMUTATOR = <=, NEGATOR = <, RESTRICT = scalargesel, JOIN = scalargejoinsel
);

--------------------------------------------------------------------------
-- Operator classes
--------------------------------------------------------------------------

CREATE OPERATOR CLASS guid_ops
	DEFAULT FOR TYPE guid USING btree AS
		OPERATOR 1 < ,
		OPERATOR 2 <= ,
		OPERATOR 3 = ,
		OPERATOR 4 >= ,
		OPERATOR 5 > ,
		FUNCTION 1 guid_cmp(guid, guid),
		FUNCTION 2 guid_sortsupport(internal);

-- The cross-type members, and timestamptz's own, so that the family is
-- complete for both of its types (amvalidate() accepts it).
ALTER OPERATOR FAMILY guid_ops USING btree ADD
	OPERATOR 1 < (guid, timestamptz),
	OPERATOR 2 <= (guid, timestamptz),
	OPERATOR 3 = (guid, timestamptz),
	OPERATOR 4 >= (guid, timestamptz),
	OPERATOR 5 > (guid, timestamptz),
	FUNCTION 1 (guid, timestamptz) guid_cmp_timestamptz(guid, timestamptz),
	OPERATOR 1 < (timestamptz, guid),
	OPERATOR 2 <= (timestamptz, guid),
	OPERATOR 3 = (timestamptz, guid),
	OPERATOR 4 >= (timestamptz, guid),
	OPERATOR 5 > (timestamptz, guid),
	FUNCTION 1 (timestamptz, guid) timestamptz_cmp_guid(timestamptz, guid),
	OPERATOR 1 pg_catalog.< (timestamptz, timestamptz),
	OPERATOR 2 pg_catalog.<= (timestamptz, timestamptz),
	OPERATOR 3 pg_catalog.= (timestamptz, timestamptz),
	OPERATOR 4 pg_catalog.>= (timestamptz, timestamptz),
	OPERATOR 5 pg_catalog.> (timestamptz, timestamptz),
	FUNCTION 1 (timestamptz, timestamptz) pg_catalog.timestamptz_cmp(timestamptz, timestamptz),
	FUNCTION 2 (timestamptz, timestamptz) pg_catalog.timestamp_sortsupport(internal);

CREATE OPERATOR CLASS guid_hash_ops
	DEFAULT FOR TYPE guid USING hash AS
		OPERATOR 1 = ,
		FUNCTION 1 guid_hash(guid),
		FUNCTION 2 guid_hash_extended(guid, int8);

CREATE OPERATOR CLASS guid_minmax_ops
	DEFAULT FOR TYPE guid USING brin AS
		OPERATOR 1 < ,
		OPERATOR 2 <= ,
		OPERATOR 3 = ,
		OPERATOR 4 >= ,
		OPERATOR 5 > ,
		FUNCTION 1 pg_catalog.brin_minmax_opcinfo(internal),
		FUNCTION 2 pg_catalog.brin_minmax_add_value(internal, internal, internal, internal),
		FUNCTION 3 pg_catalog.brin_minmax_consistent(internal, internal, internal),
		FUNCTION 4 pg_catalog.brin_minmax_union(internal, internal, internal);

--------------------------------------------------------------------------
-- Casts and decoding
--------------------------------------------------------------------------

CREATE FUNCTION guid_from_bigint(bigint) RETURNS guid
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION guid_timestamp(guid) RETURNS timestamptz
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION guid_timestamp(guid) IS 'creation time of a guid, to the millisecond';

CREATE FUNCTION guid_node(guid) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION guid_node(guid) IS 'node id (0..1023) that issued a guid';

CREATE FUNCTION guid_sequence(guid) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION guid_sequence(guid) IS 'sequence (0..4095) of a guid within its millisecond';

CREATE FUNCTION guid_decode(id guid,
							OUT created_at timestamptz,
							OUT node_id int4,
							OUT sequence int4)
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION guid_decode(guid) IS 'creation time, node id and sequence of a guid';

CREATE FUNCTION guid_from_parts(created_at timestamptz, node_id int4, sequence int4)
	RETURNS guid
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION guid_from_parts(timestamptz, int4, int4) IS 'the guid of a millisecond (rounded down), node id and sequence';

CREATE CAST (guid AS bigint) WITHOUT FUNCTION;
CREATE CAST (bigint AS guid) WITH FUNCTION guid_from_bigint(bigint);
CREATE CAST (guid AS timestamptz) WITH FUNCTION guid_timestamp(guid);

--------------------------------------------------------------------------
-- Generation (needs shared_preload_libraries = 'guid')
--------------------------------------------------------------------------

CREATE FUNCTION guid_next() RETURNS guid
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION guid_next() IS 'next guid of this node: unique across the fleet, increasing on this node';

CREATE FUNCTION guid_uuid() RETURNS uuid
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION guid_uuid() IS 'RFC 9562 UUIDv7 from the guid generator: increasing across all backends of this node';

--------------------------------------------------------------------------
-- Observability
--------------------------------------------------------------------------

CREATE SCHEMA guid;

CREATE FUNCTION guid_status(
	OUT mode text,
	OUT node_id int4,
	OUT ids_issued int8,
	OUT logical_time timestamptz,
	OUT ahead_ms int8,
	OUT borrowed_ms int8,
	OUT clock_steps int8,
	OUT clock_waits int8,
	OUT reserved_until timestamptz,
	OUT reservation_writes int8,
	OUT reservation_waits int8,
	OUT started_at timestamptz,
	OUT exhausted_at timestamptz,
	OUT last_error text)
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE VIEW guid.status AS SELECT * FROM guid_status();
COMMENT ON VIEW guid.status IS 'state of this node''s guid generator';

GRANT USAGE ON SCHEMA guid TO pg_monitor;
GRANT SELECT ON guid.status TO pg_monitor;
