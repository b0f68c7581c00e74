/* sql/guid--1.1--1.2.sql: idempotency keys in Redis */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION guid UPDATE TO '1.2'" to load this file. \quit

-- Not STRICT: a null service or key is an error, not a null guid.
CREATE FUNCTION guid_next(service text, idempotency_key text) RETURNS guid
	AS 'MODULE_PATHNAME', 'guid_next_idempotent'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION guid_next(text, text) IS 'the same guid for the same service and key while Redis holds the key (guid.idempotency_ttl)';

CREATE FUNCTION guid_next(service text, idempotency_keys text[]) RETURNS guid[]
	AS 'MODULE_PATHNAME', 'guid_next_idempotent_batch'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION guid_next(text, text[]) IS 'one idempotent guid per key, in order, settled with Redis in one round trip';
