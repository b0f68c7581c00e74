/* sql/guid--1.2--1.3.sql: the audit table and its Kafka stream */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION guid UPDATE TO '1.3'" to load this file. \quit

-- The transactional outbox.  guid_next(service) writes one row in the
-- caller's transaction; the publisher (guid.kafka_brokers) decodes committed
-- rows from the WAL and sends each to Kafka exactly once.  Rows are never
-- updated; delete old ones whenever you like (deletes are not streamed).
CREATE TABLE guid.audit (
	guid guid PRIMARY KEY,
	node_id int4 NOT NULL,
	created_at timestamptz NOT NULL,
	service text NOT NULL
);
COMMENT ON TABLE guid.audit IS 'every guid issued by guid_next(service): the outbox streamed to Kafka';
SELECT pg_catalog.pg_extension_config_dump('guid.audit', '');
REVOKE ALL ON guid.audit FROM PUBLIC;
GRANT SELECT ON guid.audit TO pg_monitor;

-- SECURITY DEFINER: callers need not (and should not) be able to write
-- guid.audit themselves; the function writes exactly the row it issues.
CREATE FUNCTION guid_next(service text) RETURNS guid
	AS 'MODULE_PATHNAME', 'guid_next_audited'
	LANGUAGE C VOLATILE SECURITY DEFINER PARALLEL UNSAFE;
COMMENT ON FUNCTION guid_next(text) IS 'next guid, recorded in guid.audit in the caller''s transaction (and so published to Kafka when it commits)';

-- The idempotent forms now write the audit row too, once per key: they
-- write to guid.audit, so they run as the extension's owner.
ALTER FUNCTION guid_next(text, text) SECURITY DEFINER PARALLEL UNSAFE;
ALTER FUNCTION guid_next(text, text[]) SECURITY DEFINER PARALLEL UNSAFE;

-- guid.status gains the publisher's columns (appended, as in 1.1).
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
	OUT publisher_error text)
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE VIEW guid.status AS SELECT * FROM guid_status();
COMMENT ON VIEW guid.status IS 'state of this node''s guid generator, its node id lease and its Kafka publisher';
GRANT SELECT ON guid.status TO pg_monitor;
