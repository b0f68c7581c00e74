/* sql/guid--1.0--1.1.sql: node ids leased from ZooKeeper */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION guid UPDATE TO '1.1'" to load this file. \quit

-- guid.status gains the lease columns (appended: the C function serves a
-- database still on 1.0 the 14 columns it asks for).
DROP VIEW guid.status;
DROP FUNCTION guid_status();

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
	OUT last_error text,
	OUT zookeeper_state text,
	OUT session_id text,
	OUT session_timeout_ms int4,
	OUT lease_deadline timestamptz)
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE VIEW guid.status AS SELECT * FROM guid_status();
COMMENT ON VIEW guid.status IS 'state of this node''s guid generator and its node id lease';
GRANT SELECT ON guid.status TO pg_monitor;
