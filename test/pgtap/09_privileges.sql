-- Privileges: who may call what, as the README's "Privileges" section says,
-- and every SECURITY DEFINER function pins its search_path.
BEGIN;
SELECT plan(12);

CREATE TEMP VIEW ext_functions AS
	SELECT p.oid, p.oid::regprocedure::text AS signature, p.prosecdef, p.proconfig, p.proacl
	FROM pg_proc p
	JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'guid';

-- Everything but guid_status() keeps PostgreSQL's default: EXECUTE for PUBLIC.
SELECT is(
	(SELECT array_agg(signature ORDER BY signature) FROM ext_functions
	 WHERE NOT has_function_privilege('public', oid, 'EXECUTE')),
	ARRAY['guid_status()'],
	'only guid_status() is not executable by PUBLIC');
SELECT is(
	(SELECT array_agg(a.grantee::regrole::text ORDER BY a.grantee::regrole::text)
	 FROM ext_functions f, aclexplode(f.proacl) a
	 WHERE f.signature = 'guid_status()' AND a.privilege_type = 'EXECUTE'
	   AND a.grantee <> (SELECT proowner FROM pg_proc WHERE oid = f.oid)),
	ARRAY['pg_monitor'],
	'guid_status() is granted to pg_monitor (besides its owner)');

-- No SECURITY DEFINER function (the guid_next(service ...) forms write
-- guid.audit from C, without SQL or privileges), so no search_path to pin;
-- any that comes back must pin it.
SELECT is(
	(SELECT count(*) FROM ext_functions WHERE prosecdef),
	0::bigint,
	'no function runs as the extension''s owner');
SELECT is(
	(SELECT count(*) FROM ext_functions
	 WHERE prosecdef AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (proconfig), false)),
	0::bigint,
	'every SECURITY DEFINER function would pin search_path = pg_catalog, pg_temp');

-- Tables and views.
SELECT is(
	(SELECT array_agg(grantee || ':' || privilege_type ORDER BY grantee, privilege_type)
	 FROM information_schema.role_table_grants
	 WHERE table_schema = 'guid' AND table_name = 'status' AND grantee <> 'postgres'),
	ARRAY['pg_monitor:SELECT'],
	'guid.status: SELECT for pg_monitor only');
SELECT is(
	(SELECT array_agg(grantee || ':' || privilege_type ORDER BY grantee, privilege_type)
	 FROM information_schema.role_table_grants
	 WHERE table_schema = 'guid' AND table_name = 'audit' AND grantee <> 'postgres'),
	ARRAY['pg_monitor:SELECT'],
	'guid.audit: SELECT for pg_monitor only');

-- As roles.
CREATE ROLE guid_tap_nobody;
CREATE ROLE guid_tap_monitor IN ROLE pg_monitor;
GRANT USAGE ON SCHEMA guid TO guid_tap_nobody;	-- so that only the grants below decide

SET LOCAL ROLE guid_tap_nobody;
SELECT throws_ok('SELECT * FROM guid_status()', '42501', NULL,
	'a role without pg_monitor cannot call guid_status()');
SELECT throws_ok('SELECT * FROM guid.status', '42501', NULL,
	'... nor read guid.status');
SELECT throws_ok('SELECT * FROM guid.audit', '42501', NULL,
	'... nor read guid.audit');
SELECT lives_ok('SELECT guid_next(), guid_uuid(), guid_decode(guid_next())',
	'... but generates and decodes guids');
RESET ROLE;

SET LOCAL ROLE guid_tap_monitor;
SELECT is((SELECT count(*) FROM guid.status), 1::bigint, 'a pg_monitor member reads guid.status');
SELECT lives_ok('SELECT last_error FROM guid_status()', '... and may call guid_status()');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
