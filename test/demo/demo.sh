#!/usr/bin/env bash
# demo.sh: what `make demo` shows.  Installs what is missing, builds and
# installs guid, starts a scratch cluster in standalone mode on loopback,
# issues and decodes IDs, shows guid.status, and stops the cluster again.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. test/services/lib.sh

install_and_build

dir=$GUID_RUN_DIR/demo
port=${GUID_DEMO_PORT:-55450}
run_dir_make "$dir"
trap 'scratch_stop "$dir/pg"' EXIT
scratch_start "$dir/pg" "$port" "guid.node_id = 42"
echo "PostgreSQL on 127.0.0.1:$port (data in $dir/pg/data), guid.node_id = 42"
echo

scratch_psql "$dir/pg" "$port" -e <<'SQL'
CREATE EXTENSION guid;

CREATE TABLE payments (
	id      guid PRIMARY KEY DEFAULT guid_next(),
	booking text NOT NULL,
	amount  numeric NOT NULL
);

INSERT INTO payments (booking, amount)
SELECT 'book_' || (1000 + g), 10 * g FROM generate_series(1, 5) g;

SELECT p.id, d.created_at, d.node_id, d.sequence, p.booking
FROM payments p, guid_decode(p.id) d
ORDER BY p.id;

-- A million more in one statement: unique and increasing.
SELECT count(*) AS ids, count(DISTINCT id) AS distinct_ids,
       min(id) < max(id) AS increasing
FROM (SELECT guid_next() AS id FROM generate_series(1, 1000000)) s;

-- Time-range queries use the primary key.
EXPLAIN (COSTS OFF) SELECT * FROM payments WHERE id >= now() - interval '1 hour';

-- JSON carries IDs as strings; UUIDv7 from the same generator.
SELECT to_json(guid_next()) AS json_id, guid_uuid() AS uuid_v7;

\x on
SELECT * FROM guid.status;
SQL
