/* sql/guid--1.3--1.4.sql: privileges and pinned search paths */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION guid UPDATE TO '1.4'" to load this file. \quit

-- guid_status() shows the last errors and the ZooKeeper session id: it is
-- for the roles that may read guid.status, not for PUBLIC (CREATE FUNCTION
-- grants EXECUTE to PUBLIC).  A view's caller needs EXECUTE on the functions
-- the view calls, so pg_monitor gets it too.
REVOKE EXECUTE ON FUNCTION guid_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guid_status() TO pg_monitor;

-- Every SECURITY DEFINER function pins its search_path, so that a caller's
-- objects can never stand in for the ones it means.
ALTER FUNCTION guid_next(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION guid_next(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION guid_next(text, text[]) SET search_path = pg_catalog, pg_temp;
