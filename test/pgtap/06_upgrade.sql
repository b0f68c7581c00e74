-- The upgrade chain: install the first release, update to the current one.
BEGIN;
SELECT plan(19);

DROP EXTENSION guid CASCADE;
CREATE EXTENSION guid VERSION '1.0';
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'guid'), '1.0', 'version 1.0 installs');
SELECT is((SELECT count(*) FROM information_schema.columns WHERE table_schema = 'guid' AND table_name = 'status'),
	14::bigint, '1.0 has the 14 status columns');
SELECT is((SELECT mode FROM guid.status), 'standalone', 'the current library serves a 1.0 database its status');

CREATE TABLE upgrade_keep (id guid PRIMARY KEY DEFAULT guid_next());
INSERT INTO upgrade_keep DEFAULT VALUES;

ALTER EXTENSION guid UPDATE TO '1.1';
SELECT is((SELECT count(*) FROM information_schema.columns WHERE table_schema = 'guid' AND table_name = 'status'),
	18::bigint, '1.1 adds the lease columns to guid.status');
SELECT hasnt_function('guid_next', ARRAY['text', 'text'], '1.1 has no idempotent guid_next');

ALTER EXTENSION guid UPDATE TO '1.4';
SELECT has_function('guid_next', ARRAY['text', 'text'], '1.2 adds guid_next(service, idempotency_key)');
SELECT has_function('guid_next', ARRAY['text'], '1.3 adds guid_next(service)');
SELECT has_table('guid', 'audit', '1.3 adds guid.audit');
SELECT is((SELECT count(*) FROM information_schema.columns WHERE table_schema = 'guid' AND table_name = 'status'),
	28::bigint, '1.3 adds the publisher''s columns to guid.status');
SELECT is((SELECT publisher_state FROM guid.status), NULL, 'without guid.kafka_brokers the publisher columns are null');
SELECT is((SELECT zookeeper_state FROM guid.status), NULL, 'in standalone mode the lease columns are null');
SELECT is((SELECT count(*) FROM upgrade_keep), 1::bigint, 'data in guid columns survives the update');
SELECT has_function('guid_from_time', ARRAY['timestamp with time zone'], '1.4 adds guid_from_time(timestamptz)');
SELECT ok(EXISTS (SELECT 1 FROM pg_operator WHERE oprname = '=' AND oprleft = 'guid'::regtype AND oprright = 'bigint'::regtype),
	'1.4 adds guid = bigint');
SELECT is((SELECT mode FROM guid.status), 'standalone', 'the current library serves a 1.4 database its status');

ALTER EXTENSION guid UPDATE;
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'guid'),
	(SELECT default_version FROM pg_available_extensions WHERE name = 'guid'),
	'ALTER EXTENSION guid UPDATE reaches the current version');
SELECT is((SELECT count(*) FROM information_schema.columns WHERE table_schema = 'guid' AND table_name = 'status'),
	33::bigint, '1.5 adds the reservation''s origin and the publisher''s failover counts to guid.status');
SELECT is((SELECT reservation_system_identifier FROM guid.status),
	(SELECT system_identifier::text FROM pg_control_system()),
	'1.5: the reservation names the system identifier of the server that wrote it');
SELECT is((SELECT reservation_timeline FROM guid.status),
	(SELECT timeline_id FROM pg_control_checkpoint()),
	'1.5: ... and its timeline');

SELECT * FROM finish();
ROLLBACK;
