/* sql/guid--1.3--1.4.sql: privileges and pinned search paths */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION guid UPDATE TO '1.4'" to load this file. \quit

-- guid_status() shows the last errors and the ZooKeeper session id: it is
-- for the roles that may read guid.status, not for PUBLIC (CREATE FUNCTION
-- grants EXECUTE to PUBLIC).  The view runs it with its owner's rights.
REVOKE EXECUTE ON FUNCTION guid_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guid_status() TO pg_monitor;

-- Every SECURITY DEFINER function pins its search_path, so that a caller's
-- objects can never stand in for the ones it means.
ALTER FUNCTION guid_next(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION guid_next(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION guid_next(text, text[]) SET search_path = pg_catalog, pg_temp;

-- guid_next(service) and the idempotent forms write guid.audit through the
-- executor's lower layers (extension/audit.c): no SQL, no search_path, no
-- privilege check, so they need not run as the extension's owner.  Without
-- SECURITY DEFINER there is no search_path to pin either (the pin cost a
-- backend about a microsecond per call).  Callers still cannot write
-- guid.audit themselves.
ALTER FUNCTION guid_next(text) SECURITY INVOKER RESET search_path;
ALTER FUNCTION guid_next(text, text) SECURITY INVOKER RESET search_path;
ALTER FUNCTION guid_next(text, text[]) SECURITY INVOKER RESET search_path;
