-- guid_next(service) and the guid.audit outbox (no publisher configured
-- here: the stream itself is tested in test/tap/009..012).
BEGIN;
SELECT plan(33);

SELECT has_table('guid', 'audit', 'guid.audit exists');
SELECT columns_are('guid', 'audit', ARRAY['guid', 'node_id', 'created_at', 'service'], 'guid.audit has the seed''s columns');
SELECT col_is_pk('guid', 'audit', 'guid', 'guid is its primary key');
SELECT col_type_is('guid', 'audit', 'guid', 'guid', 'of type guid');
SELECT has_function('guid_next', ARRAY['text'], 'guid_next(service text) exists');
SELECT is((SELECT count(*) FROM pg_proc WHERE proname = 'guid_next' AND (prosecdef OR proconfig IS NOT NULL)),
	0::bigint, 'no guid_next() is SECURITY DEFINER or sets a search_path: the audit row is written in C, without SQL');
SELECT is((SELECT provolatile FROM pg_proc WHERE oid = 'guid_next(text)'::regprocedure), 'v', 'and volatile');

CREATE TEMP TABLE issued AS SELECT guid_next('payment') AS id FROM generate_series(1, 100);
SELECT is((SELECT count(*) FROM guid.audit a JOIN issued i ON a.guid = i.id), 100::bigint,
	'each guid_next(service) wrote its row in the caller''s transaction');
SELECT is((SELECT count(*) FROM guid.audit a JOIN issued i ON a.guid = i.id
	WHERE a.node_id = guid_node(i.id) AND a.created_at = guid_timestamp(i.id) AND a.service = 'payment'),
	100::bigint, 'node_id, created_at and service are the guid''s');

SAVEPOINT s;
SELECT guid_next('rolled_back') FROM generate_series(1, 5);
ROLLBACK TO SAVEPOINT s;
SELECT is((SELECT count(*) FROM guid.audit WHERE service = 'rolled_back'), 0::bigint,
	'a rolled-back call leaves no row');

CREATE TEMP TABLE before AS SELECT count(*) AS n FROM guid.audit;
SELECT ok(guid_next() IS NOT NULL, 'plain guid_next()');
SELECT is((SELECT count(*) FROM guid.audit), (SELECT n FROM before), 'plain guid_next() writes no audit row');

SELECT throws_ok($$SELECT guid_next('')$$, '22023', 'invalid service name ""', 'empty service: 22023');
SELECT throws_ok($$SELECT guid_next(repeat('x', 51))$$, '22023', NULL, 'a 51-character service: 22023');
SELECT lives_ok($$SELECT guid_next(repeat('é', 50))$$, '50 characters (not bytes) are fine');
SELECT throws_ok($$SELECT guid_next(E'pay\nment')$$, '22023', NULL, 'a control character: 22023');
SELECT throws_ok($$SELECT guid_next(E'pay\u0085ment')$$, '22023', NULL, 'a C1 control character (U+0085, NEL): 22023');
SELECT throws_ok($$SELECT guid_next(E'pay\u202Ement')$$, '22023', NULL, 'a bidi override (U+202E): 22023');
SELECT throws_ok($$SELECT guid_next(E'pay\u200Bment')$$, '22023', NULL, 'a zero-width space: 22023');
SELECT lives_ok($$SELECT guid_next('paiement-été €')$$, 'letters beyond ASCII are fine');
SELECT throws_ok($$SELECT guid_next(NULL::text)$$, '22004', 'service must not be null', 'null service: 22004');
SELECT is((SELECT count(*) FROM guid.audit), (SELECT n FROM before) + 2, 'bad services wrote nothing (the two good ones a row each)');

SET ROLE pg_monitor;
SELECT throws_ok($$INSERT INTO guid.audit VALUES ('1'::guid, 1, now(), 'forged')$$, '42501', NULL,
	'other roles cannot write guid.audit directly');
RESET ROLE;

-- A role without any privilege on guid.audit still gets its audit row, and
-- its own objects named like the extension's change nothing.
CREATE ROLE audit_nobody;
CREATE SCHEMA nobody_schema AUTHORIZATION audit_nobody;
SET ROLE audit_nobody;
CREATE TABLE nobody_schema.audit (guid bigint, node_id int, created_at timestamptz, service text);
SET search_path = nobody_schema, public;
CREATE TEMP TABLE nobody_issued AS SELECT guid_next('unprivileged') AS id;
SELECT throws_ok($$SELECT count(*) FROM guid.audit$$, '42501', NULL, 'the role cannot read guid.audit');
SELECT throws_ok($$INSERT INTO guid.audit VALUES ('2'::guid, 1, now(), 'forged')$$, '42501', NULL,
	'nor write it');
SELECT is((SELECT count(*) FROM nobody_schema.audit), 0::bigint,
	'its own table "audit" first in search_path received nothing');
RESET ROLE;
RESET search_path;
SELECT is((SELECT count(*) FROM guid.audit a JOIN nobody_issued i ON a.guid = i.id
	WHERE a.service = 'unprivileged' AND a.node_id = guid_node(i.id)), 1::bigint,
	'guid_next(service) by a role without privileges on guid.audit wrote its row there');

-- A guid.audit a user altered: other columns get their defaults, and the
-- table's constraints hold (rows are written below SQL, so guid checks them).
ALTER TABLE guid.audit ADD COLUMN note text DEFAULT 'from a default', ADD COLUMN spare int8;
ALTER TABLE guid.audit DROP COLUMN spare;
SELECT guid_next('noted');
SELECT is((SELECT note FROM guid.audit WHERE service = 'noted'), 'from a default',
	'an added column gets its default');
ALTER TABLE guid.audit ADD CONSTRAINT audit_no_forbidden CHECK (service <> 'forbidden');
SELECT throws_ok($$SELECT guid_next('forbidden')$$, '23514', NULL, 'a CHECK constraint on guid.audit holds');
ALTER TABLE guid.audit DROP CONSTRAINT audit_no_forbidden, DROP COLUMN note;
ALTER TABLE guid.audit RENAME COLUMN service TO svc;
SELECT throws_ok($$SELECT guid_next('renamed')$$, '55000', 'table guid.audit does not have the shape guid writes',
	'a missing column is a clear error, not a crash');
ALTER TABLE guid.audit RENAME COLUMN svc TO service;

-- last: the rest of this transaction is read-only
CREATE TEMP TABLE ro_before AS SELECT (guid_status()).ids_issued AS n;
SET TRANSACTION READ ONLY;
SELECT throws_ok($$SELECT guid_next('read_only')$$, '25006', NULL,
	'a read-only transaction cannot record an audit row');
SELECT is((SELECT count(*) FROM guid.audit WHERE service = 'read_only'), 0::bigint, '... and wrote none');
SELECT is((guid_status()).ids_issued, (SELECT n FROM ro_before), '... and issued no guid for it');

SELECT * FROM finish();
ROLLBACK;
