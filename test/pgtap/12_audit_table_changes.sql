-- guid.audit changed by its owner (found by a review), and what guid_next(service) then writes.
-- README ("The audit stream"): "guid.audit may be altered (a column added for your own use,
-- dropped, added back)". audit.c writes rows through table_tuple_insert/ExecInsertIndexTuples
-- and skips ExecConstraints and the deferred unique-key rechecks an INSERT would queue.
-- Each case runs in a savepoint; its outcome is kept in a psql variable and checked after
-- ROLLBACK TO (pgTAP's results would be rolled back with it).
BEGIN;
SELECT plan(6);

-- Run sql in a subtransaction; 'ok' or the SQLSTATE it failed with.
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	RETURN SQLSTATE;
END $$;

-- 1. A column added for the owner's own use (README says it is allowed).
SAVEPOINT a;
ALTER TABLE guid.audit ADD COLUMN note text;
SELECT pg_temp.try($$SELECT guid_next('review_added')$$) AS r1 \gset
ROLLBACK TO SAVEPOINT a;
SELECT is(:'r1'::text, 'ok'::text, 'guid_next(service) works after ALTER TABLE guid.audit ADD COLUMN (README: it may be altered)');

-- 2. ... and dropped again: the dropped attribute stays in pg_attribute for good.
SAVEPOINT b;
ALTER TABLE guid.audit ADD COLUMN note text;
ALTER TABLE guid.audit DROP COLUMN note;
SELECT pg_temp.try($$SELECT guid_next('review_dropped')$$) AS r2 \gset
ROLLBACK TO SAVEPOINT b;
SELECT is(:'r2'::text, 'ok'::text, 'guid_next(service) works after a column was added and dropped again');

-- 3. A CHECK constraint added by the owner is either enforced or the call is refused:
--    never a committed row that violates a validated constraint.
SAVEPOINT c;
ALTER TABLE guid.audit ADD CONSTRAINT review_no_forbidden CHECK (service <> 'review_forbidden');
SELECT pg_temp.try($$SELECT guid_next('review_forbidden')$$) AS ignored \gset
SELECT count(*) AS r3 FROM guid.audit WHERE NOT (service <> 'review_forbidden') \gset
ROLLBACK TO SAVEPOINT c;
SELECT is(:'r3'::bigint, 0::bigint, 'no guid.audit row violates a validated CHECK constraint');

-- 4. A deferred UNIQUE constraint: the recheck an INSERT queues is never queued.
SAVEPOINT d;
DELETE FROM guid.audit;
ALTER TABLE guid.audit ADD CONSTRAINT review_one_per_service UNIQUE (service) DEFERRABLE INITIALLY DEFERRED;
CREATE FUNCTION pg_temp.two_then_check() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM guid_next('review_dup');
	PERFORM guid_next('review_dup');
	SET CONSTRAINTS guid.review_one_per_service IMMEDIATE;
END $$;
SELECT pg_temp.try($$SELECT pg_temp.two_then_check()$$) AS ignored \gset
SELECT count(*) AS r4 FROM guid.audit WHERE service = 'review_dup' \gset
ROLLBACK TO SAVEPOINT d;
SELECT cmp_ok(:'r4'::bigint, '<=', 1::bigint,
	'a deferrable UNIQUE (service) on guid.audit holds at SET CONSTRAINTS IMMEDIATE');

-- 5. The same with an INSERT, for comparison: PostgreSQL enforces it.
SAVEPOINT e;
DELETE FROM guid.audit;
ALTER TABLE guid.audit ADD CONSTRAINT review_one_per_service UNIQUE (service) DEFERRABLE INITIALLY DEFERRED;
CREATE FUNCTION pg_temp.two_inserts() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO guid.audit SELECT g, 1, guid_timestamp(g), 'review_dup_sql' FROM guid_next() g;
	INSERT INTO guid.audit SELECT g, 1, guid_timestamp(g), 'review_dup_sql' FROM guid_next() g;
	SET CONSTRAINTS guid.review_one_per_service IMMEDIATE;
END $$;
SELECT pg_temp.try($$SELECT pg_temp.two_inserts()$$) AS r5 \gset
ROLLBACK TO SAVEPOINT e;
SELECT is(:'r5'::text, '23505'::text, '(control) the same two rows written by INSERT fail the deferred constraint');

-- 6. An UNLOGGED guid.audit: its rows are never WAL-logged, so never decoded and never
--    reach Kafka, though committed. guid_next(service) refuses a missing slot for that
--    reason (55000); it should refuse this too.
SAVEPOINT f;
ALTER TABLE guid.audit SET UNLOGGED;
SELECT pg_temp.try($$SELECT guid_next('review_unlogged')$$) AS r6 \gset
ROLLBACK TO SAVEPOINT f;
SELECT isnt(:'r6'::text, 'ok'::text,
	'guid_next(service) refuses to write to an UNLOGGED guid.audit (its rows never reach the WAL)');

SELECT * FROM finish();
ROLLBACK;
