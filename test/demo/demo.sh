#!/usr/bin/env bash
# demo.sh: what `make demo` shows.  Installs what is missing, builds and
# installs guid, starts a real ZooKeeper, Redis and two scratch clusters on
# loopback that lease their node ids from ZooKeeper, issues and decodes IDs
# on both, shows idempotency keys and guid.status, and stops everything
# again.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. test/services/lib.sh

install_and_build

dir=$GUID_RUN_DIR/demo
run_dir_make "$dir"
trap 'scratch_stop "$dir/east"; scratch_stop "$dir/west"; test/services/services.sh down >/dev/null' EXIT
test/services/services.sh up
. "$GUID_RUN_DIR/services/services.env"

ports=(55451 55452)
names=(east west)
for i in 0 1; do
	scratch_start "$dir/${names[$i]}" "${ports[$i]}" \
		"guid.node_id = -1" "guid.zookeeper = '$GUID_ZOOKEEPER'" "guid.namespace = 'demo'" \
		"guid.redis = '$GUID_REDIS'"
	echo "cluster ${names[$i]}: PostgreSQL on 127.0.0.1:${ports[$i]}, leasing its node id from ZooKeeper at $GUID_ZOOKEEPER"
done
for i in 0 1; do
	scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -c 'CREATE EXTENSION guid'
	# the lease takes a moment after start
	for _ in $(seq 1 100); do
		[ "$(scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -Atc "SELECT mode FROM guid.status")" = leased ] && break
		sleep 0.1
	done
done

for i in 0 1; do
	echo
	echo "== cluster ${names[$i]} =="
	scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -e <<SQL
CREATE TABLE payments (
	id      guid PRIMARY KEY DEFAULT guid_next(),
	booking text NOT NULL,
	amount  numeric NOT NULL
);

INSERT INTO payments (booking, amount)
SELECT 'book_' || (1000 + g), 10 * g FROM generate_series(1, 3) g;

SELECT p.id, d.created_at, d.node_id, d.sequence, p.booking
FROM payments p, guid_decode(p.id) d
ORDER BY p.id;

SELECT mode, node_id, zookeeper_state, session_id, session_timeout_ms, lease_deadline, reserved_until
FROM guid.status;
SQL
done

echo
echo "== idempotency keys: the same key gets the same ID on both clusters (Redis at $GUID_REDIS) =="
for i in 0 1; do
	scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -e -c \
		"SELECT '${names[$i]}' AS cluster, guid_next('payment', 'book_1001') AS same_key, guid_next('payment', 'book_1002') AS other_key"
done

echo
echo "== a million IDs on east =="
scratch_psql "$dir/east" "${ports[0]}" -e <<'SQL'
-- A million in one statement: unique and increasing.
SELECT count(*) AS ids, count(DISTINCT id) AS distinct_ids, min(id) < max(id) AS increasing
FROM (SELECT guid_next() AS id FROM generate_series(1, 1000000)) s;

-- Time-range queries use the primary key.
EXPLAIN (COSTS OFF) SELECT * FROM payments WHERE id >= now() - interval '1 hour';

-- JSON carries IDs as strings; UUIDv7 from the same generator.
SELECT to_json(guid_next()) AS json_id, guid_uuid() AS uuid_v7;

\x on
SELECT * FROM guid.status;
SQL
