/* sql/guid--1.4--1.5.sql: high availability: where the reservation came from; the publisher's failover counts */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION guid UPDATE TO '1.5'" to load this file. \quit

-- guid.status gains five columns (appended, as in 1.1 and 1.3):
--   reservation_system_identifier, reservation_timeline: the system
--     identifier and timeline of the server that wrote the durable
--     reservation (on a standby, the primary's, replayed from the WAL);
--     null for a reservation file written before 1.5;
--   publisher_failover_republished, publisher_failover_duplicates,
--   publisher_failover_missing: what the publisher did after a promotion.
-- The function keeps its privileges: EXECUTE for pg_monitor, not PUBLIC.
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
	OUT lease_deadline timestamptz,
	OUT publisher_state text,
	OUT publisher_pid int4,
	OUT rows_published int8,
	OUT transactions_published int8,
	OUT kafka_commits int8,
	OUT last_published_lsn pg_lsn,
	OUT slot_lag_bytes int8,
	OUT publish_lag_seconds float8,
	OUT kafka_commit_ms float8,
	OUT publisher_error text,
	OUT reservation_system_identifier text,
	OUT reservation_timeline int4,
	OUT publisher_failover_republished int8,
	OUT publisher_failover_duplicates int8,
	OUT publisher_failover_missing int8)
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
REVOKE EXECUTE ON FUNCTION guid_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guid_status() TO pg_monitor;

CREATE VIEW guid.status AS SELECT * FROM guid_status();
COMMENT ON VIEW guid.status IS 'state of this node''s guid generator, its node id lease and its Kafka publisher';
GRANT SELECT ON guid.status TO pg_monitor;
