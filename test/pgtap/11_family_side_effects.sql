-- Installing guid must not change how PostgreSQL plans queries that involve
-- no guid at all.  guid--1.3--1.4.sql adds core's int8 = int8 and
-- timestamptz = timestamptz to the btree family guid_ops; the planner merges
-- two equalities into one equivalence class only when their operators belong
-- to exactly the same list of btree families (process_equivalence,
-- get_mergejoin_opfamilies), so x = y (int8 = int8: integer_ops and guid_ops)
-- and y = 5 (int8 = int4: integer_ops only) no longer meet, and x = 5 is no
-- longer derived: no index condition on the other side, no partition pruning.
-- Without guid installed these plans have "Index Cond: (x = 5)" on both sides
-- and scan one partition.
BEGIN;
SELECT plan(3);

\ir plan_of.psql

CREATE TABLE sfx_a (x bigint);
CREATE TABLE sfx_b (x bigint);
INSERT INTO sfx_a SELECT g FROM generate_series(1, 100000) g;
INSERT INTO sfx_b SELECT g FROM generate_series(1, 100000) g;
CREATE INDEX ON sfx_a (x);
CREATE INDEX ON sfx_b (x);
ANALYZE sfx_a;
ANALYZE sfx_b;

SELECT matches(pg_temp.plan_of($$SELECT * FROM sfx_a JOIN sfx_b ON sfx_a.x = sfx_b.x WHERE sfx_b.x = 5$$),
	'Index Cond: \(x = 5\).*Index Cond: \(x = 5\)',
	'bigint join with an integer constant: a.x = 5 is derived, as without guid');

CREATE TABLE sfx_p (x bigint) PARTITION BY RANGE (x);
CREATE TABLE sfx_p1 PARTITION OF sfx_p FOR VALUES FROM (0) TO (1000);
CREATE TABLE sfx_p2 PARTITION OF sfx_p FOR VALUES FROM (1000) TO (2000);
INSERT INTO sfx_p SELECT generate_series(0, 1999);
ANALYZE sfx_p;
SELECT doesnt_match(pg_temp.plan_of($$SELECT * FROM sfx_p JOIN sfx_b ON sfx_p.x = sfx_b.x WHERE sfx_b.x = 5$$),
	'sfx_p2',
	'bigint-partitioned table joined with an integer constant is pruned, as without guid');

CREATE TABLE sfx_e (ts timestamptz);
CREATE TABLE sfx_f (ts timestamptz);
INSERT INTO sfx_e SELECT '2025-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 20000) g;
INSERT INTO sfx_f SELECT ts FROM sfx_e;
CREATE INDEX ON sfx_e (ts);
CREATE INDEX ON sfx_f (ts);
ANALYZE sfx_e;
ANALYZE sfx_f;
SELECT matches(pg_temp.plan_of($$SELECT * FROM sfx_e JOIN sfx_f ON sfx_e.ts = sfx_f.ts WHERE sfx_f.ts = '2025-03-01'::date$$),
	'Index Cond: \(ts = ''2025-03-01''::date\).*Index Cond: \(ts = ''2025-03-01''::date\)',
	'timestamptz join with a date constant: e.ts = date is derived, as without guid');

SELECT * FROM finish();
ROLLBACK;
