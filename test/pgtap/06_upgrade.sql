-- The upgrade chain: install the first release, update to the current one.
BEGIN;
SELECT plan(7);

DROP EXTENSION guid CASCADE;
CREATE EXTENSION guid VERSION '1.0';
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'guid'), '1.0', 'version 1.0 installs');
SELECT is((SELECT count(*) FROM information_schema.columns WHERE table_schema = 'guid' AND table_name = 'status'),
	14::bigint, '1.0 has the 14 status columns');
SELECT is((SELECT mode FROM guid.status), 'standalone', 'the current library serves a 1.0 database its status');

CREATE TABLE upgrade_keep (id guid PRIMARY KEY DEFAULT guid_next());
INSERT INTO upgrade_keep DEFAULT VALUES;

ALTER EXTENSION guid UPDATE;
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'guid'), '1.1', 'ALTER EXTENSION guid UPDATE reaches 1.1');
SELECT is((SELECT count(*) FROM information_schema.columns WHERE table_schema = 'guid' AND table_name = 'status'),
	18::bigint, '1.1 adds the lease columns to guid.status');
SELECT is((SELECT zookeeper_state FROM guid.status), NULL, 'in standalone mode the lease columns are null');
SELECT is((SELECT count(*) FROM upgrade_keep), 1::bigint, 'data in guid columns survives the update');

SELECT * FROM finish();
ROLLBACK;
