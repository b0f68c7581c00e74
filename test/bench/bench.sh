#!/usr/bin/env bash
# bench.sh: how fast guid_next() and guid_uuid() are next to sequences and
# gen_random_uuid(), in throw-away clusters on free ports.  It builds and
# installs the extension first (as make test does), so it measures this
# checkout.
#
# Eight sections, each printed as a table, then a 'Targets' block:
#   bulk    SELECT count(f) FROM generate_series(1, N), timed in the server,
#           against the floors count(g) and count(clock_timestamp())
#   pgbench SELECT f(); from 2 clients for PGBENCH_SECONDS, against SELECT 1
#   insert  INSERT of N rows into a LOGGED table whose primary key defaults
#           to the generator, plus the size of its primary-key index
#   leased  node ids from a real ZooKeeper: start to first lease, a killed
#           holder's id leased again, guid_next() leased beside standalone;
#           ZooKeeper frozen 5 s under load, mark writes per minute, a new
#           holder's wait after a clean handover and after an expiry
#           (test/bench/zk_outage.sh)
#   idem    guid_next(service, key) against a real Redis, beside
#           redis-benchmark's round-trip floor, and the pipelined batch form
#   audit   guid_next(service) beside guid_next(); the publisher's sustained
#           rate into a real Kafka; latency at 5,000 rows/s by a consumer
#   failover  a streaming standby promoted: pg_ctl promote to the first ID,
#           and to the stream streaming again (test/bench/failover.sh)
#   gateway guid_gateway in front of the scratch cluster, wrk on 64 keep-alive
#           connections: POST /guid/generate with auth off, with an HS256
#           JWT, and with an Idempotency-Key, beside GET /healthz (the HTTP
#           floor) and pgbench SELECT guid_next() from 64 clients: req/s,
#           p50, p99 (test/bench/gateway.sh)
#
# This is not a test: it prints figures and exits 0 whether or not a target
# is met.  It fails only when something actually breaks.
#
# Environment:
#   BENCH_REPEATS    bulk repetitions, median reported (default 5)
#   PGBENCH_SECONDS  length of one pgbench run (default 10)
#   PGBENCH_REPEATS  pgbench repetitions, median reported (default 3)
#   INSERT_REPEATS   insert repetitions, median reported (default 3)
#   BENCH_QUICK=1    a quick check: 500000 bulk rows, 200000 inserted rows,
#                    2 s pgbench runs, every repeat count 1
#   BENCH_ONLY       a comma-separated list of the sections to run (bulk,
#                    pgbench, insert, leased, idem, audit, failover, gateway);
#                    default all
#   GW_SECONDS       length of one wrk or pgbench run in the gateway section
#                    (default 10; 3 with BENCH_QUICK)
#   GW_REPEATS       gateway-section repetitions, median reported (default 3)
#   GUID_RUN_DIR     where the scratch cluster lives (default /tmp/guid-run)
#   GUID_ZOOKEEPER_PORT, GUID_REDIS_PORT, GUID_KAFKA_PORT
#                    ports for the benchmark's own ZooKeeper, Redis and Kafka
#                    (Kafka also takes the next port); default 52182, 56380,
#                    59192.  The PostgreSQL clusters take free ports.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../services/lib.sh
. "$ROOT/test/services/lib.sh"
# shellcheck source=stream.sh
. "$ROOT/test/bench/stream.sh"

DIR=$GUID_RUN_DIR/bench

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	BULK_ROWS=500000
	INSERT_ROWS=200000
	PGBENCH_SECONDS=${PGBENCH_SECONDS:-2}
	BENCH_REPEATS=${BENCH_REPEATS:-1}
	PGBENCH_REPEATS=${PGBENCH_REPEATS:-1}
	INSERT_REPEATS=${INSERT_REPEATS:-1}
else
	BULK_ROWS=5000000
	INSERT_ROWS=2000000
	PGBENCH_SECONDS=${PGBENCH_SECONDS:-10}
	BENCH_REPEATS=${BENCH_REPEATS:-5}
	PGBENCH_REPEATS=${PGBENCH_REPEATS:-3}
	INSERT_REPEATS=${INSERT_REPEATS:-3}
fi

#
# Helpers
#

# q SQL: run SQL in the scratch cluster, print unaligned tuples only.
q() {
	scratch_psql "$DIR" "$PORT" -At -c "$1"
}

# median X...: the median of the numbers (mean of the middle two if even).
median() {
	printf '%s\n' "$@" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# fmt FORMAT EXPR: evaluate an awk expression and printf it.
fmt() {
	awk "BEGIN { printf \"$1\", $2 }"
}

# ratio A B: A / B as "1.23x".
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'
}

# wait_clock: poll guid.status every 100 ms until the generator's logical
# clock is back on the wall clock (ahead_ms = 0), so that the next timed run
# starts with the full guid.max_clock_ahead borrowing budget.
wait_clock() {
	local i ahead
	for ((i = 0; i < 600; i++)); do
		ahead=$(q "SELECT ahead_ms FROM guid.status")
		[ "$ahead" -eq 0 ] && return 0
		sleep 0.1
	done
	echo "bench: the guid clock is still ${ahead} ms ahead after 60 s" >&2
	return 1
}

# time_ms SQL: run SQL once in the server and print its elapsed milliseconds
# (see bench_ms below).
time_ms() {
	q "SELECT round(bench_ms(\$bench\$$1\$bench\$)::numeric, 1)"
}

# rule WIDTH: a line of dashes.
rule() {
	printf '%*s\n' "$1" '' | tr ' ' '-'
}

# section NAME: true if the section NAME is to run (BENCH_ONLY).
section() {
	[ -z "${BENCH_ONLY:-}" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]
}

# at_exit CMD: run CMD when the script exits (in the order added).
EXIT_CMDS=()
at_exit() {
	EXIT_CMDS+=("$1")
}
run_exit_cmds() {
	local cmd
	for cmd in "${EXIT_CMDS[@]}"; do eval "$cmd"; done
}
trap run_exit_cmds EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

#
# Build and install what is measured, then the scratch cluster
#

cd "$ROOT"
# The test flavour: the audit section holds the publisher back with
# guid.publisher_test_pause to build a backlog.  It differs from a production
# build only by that setting (a string compare per publisher step).
install_and_build GUID_FAULT_INJECTION=1

cleanup() {
	scratch_stop "$DIR"
}
at_exit cleanup
PORT=$(free_port)

scratch_stop "$DIR"		# a cluster left by an interrupted earlier run
run_dir_make "$DIR"
scratch_start "$DIR" "$PORT" "guid.node_id = 1"

# Timing is server-side: bench_ms() EXECUTEs the statement in a PL/pgSQL
# function and returns the clock_timestamp() difference, so neither the
# client round trip nor (for INSERT) the commit is counted.
BENCH_MS_SQL="CREATE FUNCTION bench_ms(query text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	EXECUTE query;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
\$\$;"
q "
CREATE EXTENSION guid;
CREATE SEQUENCE s1 CACHE 1;
CREATE SEQUENCE s1000 CACHE 1000;
$BENCH_MS_SQL
"

#
# Header
#

echo "guid benchmark  $(date '+%Y-%m-%d %H:%M:%S %Z')"
echo "machine:    $(uname -n), $(nproc) CPUs, $(uname -sr)"
echo "postgresql: $(q 'SELECT version()')"
echo "settings:   bulk ${BULK_ROWS} rows x ${BENCH_REPEATS}, pgbench ${PGBENCH_SECONDS} s x ${PGBENCH_REPEATS}, insert ${INSERT_ROWS} rows x ${INSERT_REPEATS}; medians"
echo "note:       the sustained guid rate is capped by the layout at 4.096 M IDs/s per node" \
	"(4096 per ms); bursts borrow ahead up to guid.max_clock_ahead" \
	"($(q 'SHOW guid.max_clock_ahead')), and every timed run starts with ahead_ms = 0."
echo

#
# 1. Bulk: SELECT count(f) FROM generate_series(1, N)
#

if section bulk; then

BULK_NAMES=(guid_next guid_uuid "nextval s1" "nextval s1000" gen_random_uuid "count(g)" clock_timestamp)
BULK_EXPRS=("guid_next()" "guid_uuid()" "nextval('s1')" "nextval('s1000')" "gen_random_uuid()" "g" "clock_timestamp()")
declare -A bulk_runs=() bulk_ms=()

# one short untimed pass of each, so no timed run pays for first use
for expr in "${BULK_EXPRS[@]}"; do
	q "SELECT count($expr) FROM generate_series(1, 10000) g" >/dev/null
done

# repetitions round-robin, so that noise from the neighbours spreads evenly
for ((rep = 0; rep < BENCH_REPEATS; rep++)); do
	for i in "${!BULK_EXPRS[@]}"; do
		wait_clock
		bulk_runs[$i]+=" $(time_ms "SELECT count(${BULK_EXPRS[$i]}) FROM generate_series(1, $BULK_ROWS) g")"
	done
done
for i in "${!BULK_EXPRS[@]}"; do
	# shellcheck disable=SC2086
	bulk_ms[$i]=$(median ${bulk_runs[$i]})
done
floor=${bulk_ms[6]}

echo "Bulk: SELECT count(f) FROM generate_series(1, $BULK_ROWS) g  (server-side time, median of $BENCH_REPEATS)"
printf '%-18s %12s %12s %14s\n' "f" "ms" "M rows/s" "vs clock floor"
rule 59
for i in "${!BULK_EXPRS[@]}"; do
	printf '%-18s %12s %12s %14s\n' "${BULK_NAMES[$i]}" "$(fmt '%.1f' "${bulk_ms[$i]}")" \
		"$(fmt '%.2f' "$BULK_ROWS / ${bulk_ms[$i]} / 1000")" "$(ratio "${bulk_ms[$i]}" "$floor")"
done
echo

fi

#
# 2. pgbench: SELECT f(); from 2 clients
#

# pgbench runs as postgres, which may not read the checkout: scripts go in $DIR.
echo "SELECT guid_next();" | as_pg tee "$DIR/pgbench-0.sql" >/dev/null

if section pgbench; then
PGB_NAMES=(guid_next guid_uuid "nextval s1" "nextval s1000" gen_random_uuid clock_timestamp "SELECT 1")
PGB_SQL=("SELECT guid_next();" "SELECT guid_uuid();" "SELECT nextval('s1');" "SELECT nextval('s1000');"
	"SELECT gen_random_uuid();" "SELECT clock_timestamp();" "SELECT 1;")
declare -A pgb_runs=() pgb_tps=()

# pgbench runs as postgres, which may not read the checkout: scripts go in $DIR.
for i in "${!PGB_SQL[@]}"; do
	printf '%s\n' "${PGB_SQL[$i]}" | as_pg tee "$DIR/pgbench-$i.sql" >/dev/null
done

for ((rep = 0; rep < PGBENCH_REPEATS; rep++)); do
	for i in "${!PGB_SQL[@]}"; do
		wait_clock
		out=$(as_pg pgbench -n -c 2 -j 2 -T "$PGBENCH_SECONDS" -h "$DIR" -p "$PORT" -U postgres \
			-f "$DIR/pgbench-$i.sql" postgres 2>"$DIR/pgbench.err") ||
			{ cat "$DIR/pgbench.err" >&2; exit 1; }
		tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
		[ -n "$tps" ] || { echo "bench: no tps in pgbench output:" >&2; echo "$out" >&2; exit 1; }
		pgb_runs[$i]+=" $tps"
	done
done
for i in "${!PGB_SQL[@]}"; do
	# shellcheck disable=SC2086
	pgb_tps[$i]=$(median ${pgb_runs[$i]})
done
select1=${pgb_tps[6]}

echo "pgbench: -n -c 2 -j 2 -T $PGBENCH_SECONDS, one statement per transaction  (median of $PGBENCH_REPEATS)"
printf '%-18s %12s %14s\n' "statement" "tps" "vs SELECT 1"
rule 46
for i in "${!PGB_SQL[@]}"; do
	printf '%-18s %12s %14s\n' "${PGB_NAMES[$i]}" "$(fmt '%.0f' "${pgb_tps[$i]}")" \
		"$(ratio "${pgb_tps[$i]}" "$select1")"
done
echo

fi

#
# 3. Insert: a LOGGED table whose primary key defaults to the generator
#

if section insert; then

INS_NAMES=(guid_next "nextval s1" "nextval s1000" gen_random_uuid guid_uuid)
INS_TABLES=(ins_guid ins_s1 ins_s1000 ins_uuid4 ins_uuid7)
INS_KEYS=("guid PRIMARY KEY DEFAULT guid_next()" "bigint PRIMARY KEY DEFAULT nextval('s1')"
	"bigint PRIMARY KEY DEFAULT nextval('s1000')" "uuid PRIMARY KEY DEFAULT gen_random_uuid()"
	"uuid PRIMARY KEY DEFAULT guid_uuid()")
declare -A ins_runs=() ins_ms=() ins_mb=()

for ((rep = 0; rep < INSERT_REPEATS; rep++)); do
	for i in "${!INS_TABLES[@]}"; do
		t=${INS_TABLES[$i]}
		q "SET client_min_messages = warning; DROP TABLE IF EXISTS $t; CREATE TABLE $t (id ${INS_KEYS[$i]}, payload int);"
		q "CHECKPOINT"		# no dirty pages left by the previous run
		wait_clock
		ins_runs[$i]+=" $(time_ms "INSERT INTO $t (payload) SELECT g FROM generate_series(1, $INSERT_ROWS) g")"
		# the index of the last repetition; they are all built alike
		ins_mb[$i]=$(q "SELECT pg_relation_size('${t}_pkey') / 1048576.0")
	done
done
for i in "${!INS_TABLES[@]}"; do
	# shellcheck disable=SC2086
	ins_ms[$i]=$(median ${ins_runs[$i]})
done
ins_ref=${ins_ms[2]}
idx_ref=${ins_mb[2]}

echo "Insert: INSERT INTO t (payload) SELECT g FROM generate_series(1, $INSERT_ROWS) g  (server-side time, median of $INSERT_REPEATS)"
printf '%-18s %12s %12s %14s %12s %14s\n' "primary key" "ms" "M rows/s" "vs s1000" "PK index MB" "vs bigint PK"
rule 87
for i in "${!INS_TABLES[@]}"; do
	printf '%-18s %12s %12s %14s %12s %14s\n' "${INS_NAMES[$i]}" "$(fmt '%.1f' "${ins_ms[$i]}")" \
		"$(fmt '%.2f' "$INSERT_ROWS / ${ins_ms[$i]} / 1000")" "$(ratio "${ins_ms[$i]}" "$ins_ref")" \
		"$(fmt '%.2f' "${ins_mb[$i]}")" "$(ratio "${ins_mb[$i]}" "$idx_ref")"
done
echo "(the bigint PK reference is the nextval CACHE 1000 table; s1's index is the same size)"
echo

fi

now_ms() {
	date +%s%3N
}

#
# 4. Leased mode: node ids from a real ZooKeeper (private to the benchmark)
#

if section leased; then
ZK_DIR=$GUID_RUN_DIR/bench-zk
ZK_PORT=${GUID_ZOOKEEPER_PORT:-52182}
LDIR=$GUID_RUN_DIR/bench-leased
LPORT=$(free_port)
KDIR=$GUID_RUN_DIR/bench-killed
KPORT=$(free_port)
KPORT_B=$(free_port)
ZK_TIMEOUT=2s

ql() {
	scratch_psql "$LDIR" "$LPORT" -At -c "$1"
}

# wait_leased DIR PORT: poll every 10 ms until the cluster holds a lease.
wait_leased() {
	local i
	for ((i = 0; i < 3000; i++)); do
		[ "$(scratch_psql "$1" "$2" -At -c "SELECT mode FROM guid.status" 2>/dev/null)" = leased ] && return 0
		sleep 0.01
	done
	echo "bench: $1 did not lease a node id" >&2
	return 1
}

# zk_holds PATH: ZooKeeper still holds the ephemeral znode PATH ("dump").
zk_holds() {
	local out
	exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" || return 0
	printf 'dump' >&3
	out=$(timeout 2 cat <&3 || true)
	exec 3<&-
	grep -q "^[[:space:]]*$1\$" <<<"$out"
}

cleanup_leased() {
	scratch_stop "$LDIR"
	scratch_stop "$KDIR"
	"$ROOT/test/services/zookeeper.sh" stop "$ZK_DIR"
}
at_exit cleanup_leased

"$ROOT/test/services/zookeeper.sh" stop "$ZK_DIR"
rm -rf "$ZK_DIR"
"$ROOT/test/services/zookeeper.sh" start "$ZK_DIR" "$ZK_PORT"
zk_conf=("guid.node_id = -1" "guid.zookeeper = '127.0.0.1:$ZK_PORT'" "guid.zookeeper_session_timeout = '$ZK_TIMEOUT'")

scratch_stop "$LDIR"
run_dir_make "$LDIR"
scratch_start "$LDIR" "$LPORT" "${zk_conf[@]}" "guid.namespace = 'bench'"
ql "CREATE EXTENSION guid"
wait_leased "$LDIR" "$LPORT"

# pg_ctl start to first lease, over clean restarts (each frees its id)
lease_runs=""
for ((rep = 0; rep < 3; rep++)); do
	as_pg pg_ctl -D "$LDIR/data" -m fast -w stop >/dev/null
	t0=$(now_ms)
	as_pg pg_ctl -D "$LDIR/data" -l "$LDIR/server.log" -w start >/dev/null
	wait_leased "$LDIR" "$LPORT"
	lease_runs+=" $(($(now_ms) - t0))"
done
# shellcheck disable=SC2086
start_to_lease=$(median $lease_runs)

# a holder killed with kill -9: time until ZooKeeper frees its id, then
# until a new cluster holds it
gone_runs=""
relse_runs=""
scratch_stop "$KDIR"
run_dir_make "$KDIR"
for ((rep = 0; rep < 3; rep++)); do
	ns="bench_dead_$rep"
	as_pg rm -rf "$KDIR/a" "$KDIR/b"
	scratch_start "$KDIR/a" "$KPORT" "${zk_conf[@]}" "guid.namespace = '$ns'"
	scratch_psql "$KDIR/a" "$KPORT" -c 'CREATE EXTENSION guid'
	wait_leased "$KDIR/a" "$KPORT"
	scratch_init "$KDIR/b" "$KPORT_B" "${zk_conf[@]}" "guid.namespace = '$ns'"
	# the postmaster dies; its children, the coordinator among them, follow
	kill -9 "$(head -1 "$KDIR/a/data/postmaster.pid")"
	t0=$(now_ms)
	while zk_holds "/guid/$ns/nodes/0"; do sleep 0.01; done
	t1=$(now_ms)
	gone_runs+=" $((t1 - t0))"
	scratch_run "$KDIR/b"
	scratch_psql "$KDIR/b" "$KPORT_B" -c 'CREATE EXTENSION guid'
	wait_leased "$KDIR/b" "$KPORT_B"
	[ "$(scratch_psql "$KDIR/b" "$KPORT_B" -At -c 'SELECT node_id FROM guid.status')" = 0 ] ||
		{ echo "bench: the successor did not take the freed id 0" >&2; exit 1; }
	relse_runs+=" $(($(now_ms) - t0))"
	scratch_stop "$KDIR/b"
done
# shellcheck disable=SC2086
gone_ms=$(median $gone_runs)
# shellcheck disable=SC2086
relse_ms=$(median $relse_runs)

# guid_next() leased beside standalone, alternating
ql "$BENCH_MS_SQL"
wait_clock_leased() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(ql "SELECT ahead_ms FROM guid.status")" -eq 0 ] && return 0
		sleep 0.1
	done
}
lb_runs=""
sb_runs=""
lp_runs=""
sp_runs=""
bulk_sql="SELECT count(guid_next()) FROM generate_series(1, $BULK_ROWS)"
for ((rep = 0; rep < BENCH_REPEATS; rep++)); do
	wait_clock
	sb_runs+=" $(time_ms "$bulk_sql")"
	wait_clock_leased
	lb_runs+=" $(ql "SELECT round(bench_ms(\$b\$${bulk_sql}\$b\$)::numeric, 1)")"
done
for ((rep = 0; rep < PGBENCH_REPEATS; rep++)); do
	for mode in standalone leased; do
		if [ $mode = standalone ]; then d=$DIR p=$PORT; else d=$LDIR p=$LPORT; fi
		out=$(as_pg pgbench -n -c 2 -j 2 -T "$PGBENCH_SECONDS" -h "$d" -p "$p" -U postgres \
			-f "$DIR/pgbench-0.sql" postgres 2>"$DIR/pgbench.err") ||
			{ cat "$DIR/pgbench.err" >&2; exit 1; }
		tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
		if [ $mode = standalone ]; then sp_runs+=" $tps"; else lp_runs+=" $tps"; fi
	done
done
# shellcheck disable=SC2086
sb_ms=$(median $sb_runs)
# shellcheck disable=SC2086
lb_ms=$(median $lb_runs)
# shellcheck disable=SC2086
sp_tps=$(median $sp_runs)
# shellcheck disable=SC2086
lp_tps=$(median $lp_runs)

echo "Leased mode: node id from ZooKeeper (session timeout $ZK_TIMEOUT), beside standalone"
printf '%-52s %12s\n' "pg_ctl start -> first lease (median of 3)" "$start_to_lease ms"
printf '%-52s %12s\n' "holder kill -9 -> its lease znode gone (median of 3)" "$gone_ms ms"
printf '%-52s %12s\n' "holder kill -9 -> id leased by a new cluster" "$relse_ms ms"
echo "(the new cluster starts once the znode is gone; the ZooKeeper server expires sessions on ticks of 500 ms)"
printf '%-30s %14s %14s %10s\n' "guid_next()" "standalone" "leased" "leased/st"
rule 71
printf '%-30s %14s %14s %10s\n' "bulk ${BULK_ROWS} (ms, median)" "$(fmt '%.1f' "$sb_ms")" "$(fmt '%.1f' "$lb_ms")" "$(ratio "$lb_ms" "$sb_ms")"
printf '%-30s %14s %14s %10s\n' "pgbench SELECT guid_next() tps" "$(fmt '%.0f' "$sp_tps")" "$(fmt '%.0f' "$lp_tps")" "$(ratio "$lp_tps" "$sp_tps")"
echo

# ZooKeeper frozen under load, the ZooKeeper writes, a new holder's wait
# shellcheck source=zk_outage.sh
. "$ROOT/test/bench/zk_outage.sh"

fi

#
# 5. Idempotency keys: guid_next(service, key) against a real Redis
#

if section idem; then
RDIR=$GUID_RUN_DIR/bench-redis
RPORT=${GUID_REDIS_PORT:-56380}
IDEM_N=20000
LAT_N=5000
"$ROOT/test/services/redis.sh" stop "$RDIR"
"$ROOT/test/services/redis.sh" start "$RDIR" "$RPORT"
at_exit '"$ROOT/test/services/redis.sh" stop "$RDIR"'
q "ALTER SYSTEM SET guid.redis = '127.0.0.1:$RPORT'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 100); do
	[ "$(q "SELECT current_setting('guid.redis')")" = "127.0.0.1:$RPORT" ] && break
	sleep 0.05
done

# the round-trip floor: one client doing the same SET ... NX EX (timed in
# each repetition, right before the single calls it is compared with)
floor_rate() {
	redis-benchmark -h 127.0.0.1 -p "$RPORT" -c 1 -n "$IDEM_N" -r 100000000 --csv \
		SET "guid:bench:__rand_int__" v NX EX 86400 | awk -F'"' 'NR == 2 { print $4 }'
}
# and the ceiling for the batch form: the same command pipelined, 1000 deep
ceiling_rps=$(redis-benchmark -h 127.0.0.1 -p "$RPORT" -c 1 -P 1000 -n 200000 -r 100000000 --csv \
	SET "guid:bench:__rand_int__" v NX GET EX 86400 | awk -F'"' 'NR == 2 { print $4 }')

# per-call latency, measured in the server around each call
q "CREATE FUNCTION bench_idem_p99(n int, prefix text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE
	t timestamptz;
	lat float8[] := '{}';
BEGIN
	FOR i IN 1 .. n LOOP
		t := clock_timestamp();
		PERFORM guid_next('bench', prefix || i);
		lat := lat || extract(epoch FROM clock_timestamp() - t) * 1000;
	END LOOP;
	RETURN (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY x) FROM unnest(lat) x);
END
\$\$;" >/dev/null

# the same C function as SECURITY DEFINER with a pinned search_path, as
# guid 1.4 would have needed had the audit row been written through SQL
q "CREATE FUNCTION bench_pinned(text, text) RETURNS guid AS '\$libdir/guid', 'guid_next_idempotent'
	LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp" >/dev/null

floor_runs=""
single_runs=""
pinned_runs=""
batch_runs=""
p99_runs=""
for ((rep = 0; rep < BENCH_REPEATS; rep++)); do
	wait_clock
	floor_runs+=" $(floor_rate)"
	ms=$(time_ms "SELECT count(guid_next('bench', 's${rep}_' || g)) FROM generate_series(1, $IDEM_N) g")
	single_runs+=" $(fmt '%.0f' "$IDEM_N / $ms * 1000")"
	wait_clock
	ms=$(time_ms "SELECT count(bench_pinned('bench', 'p${rep}_' || g)) FROM generate_series(1, $IDEM_N) g")
	pinned_runs+=" $(fmt '%.0f' "$IDEM_N / $ms * 1000")"
	wait_clock
	ms=$(time_ms "SELECT cardinality(guid_next('bench', array_agg('b${rep}_' || g))) FROM generate_series(1, $IDEM_N) g")
	batch_runs+=" $(fmt '%.0f' "$IDEM_N / $ms * 1000")"
	p99_runs+=" $(q "SELECT round(bench_idem_p99($LAT_N, 'l${rep}_')::numeric, 3)")"
done
# shellcheck disable=SC2086
floor_rps=$(median $floor_runs)
# shellcheck disable=SC2086
single_rps=$(median $single_runs)
# shellcheck disable=SC2086
pinned_rps=$(median $pinned_runs)
# shellcheck disable=SC2086
batch_rps=$(median $batch_runs)
# shellcheck disable=SC2086
p99_ms=$(median $p99_runs)

echo "Idempotency keys: one backend, Redis on loopback, $IDEM_N fresh keys per run (median of $BENCH_REPEATS)"
printf '%-60s %12s\n' "redis-benchmark -c 1 SET key v NX EX 86400 (round-trip floor)" "$(fmt '%.0f' "$floor_rps")/s"
printf '%-60s %12s %10s\n' "guid_next('bench', key), one call per key" "$(fmt '%.0f' "$single_rps")/s" "$(ratio "$floor_rps" "$single_rps")"
printf '%-60s %12s\n' "  p99 latency of one call ($LAT_N calls, timed in the server)" "$p99_ms ms"
printf '%-60s %12s %10s\n' "  the same as SECURITY DEFINER SET search_path (not shipped)" "$(fmt '%.0f' "$pinned_rps")/s" "$(ratio "$floor_rps" "$pinned_rps")"
printf '%-60s %12s %10s\n' "guid_next('bench', keys[]), $IDEM_N keys in one pipeline" "$(fmt '%.0f' "$batch_rps")/s" "$(ratio "$batch_rps" "$single_rps")"
printf '%-60s %12s %10s\n' "redis-benchmark -c 1 -P 1000 SET key v NX GET EX (pipelined ceiling)" "$(fmt '%.0f' "$ceiling_rps")/s" "$(ratio "$ceiling_rps" "$single_rps")"
echo "(ratios: floor rate / single-call rate; batch rate and Redis's own pipelined ceiling / single-call rate)"
echo

fi

#
# 6. The audit stream: guid_next(service) and the publisher, against a real
#    Kafka broker of the benchmark's own
#

if section audit; then
ADIR=$GUID_RUN_DIR/bench-audit
APORT=$(free_port)
KAFKA_DIR=$GUID_RUN_DIR/bench-kafka
KAFKA_PORT=${GUID_KAFKA_PORT:-59192}
AUDIT_N=200000
DRAIN_N=${BENCH_DRAIN_ROWS:-500000}
[ "${BENCH_QUICK:-0}" = 1 ] && DRAIN_N=100000
"$ROOT/test/services/kafka.sh" stop "$KAFKA_DIR"
"$ROOT/test/services/kafka.sh" start "$KAFKA_DIR" "$KAFKA_PORT"
cleanup_audit() {
	scratch_stop "$ADIR"
	"$ROOT/test/services/kafka.sh" stop "$KAFKA_DIR"
}
at_exit cleanup_audit
STREAM_WORK=$DIR
stream_cluster_start "$ADIR" "$APORT" "127.0.0.1:$KAFKA_PORT" 5
qa() {
	stream_q "$1"
}
qa "$BENCH_MS_SQL"
atime_ms() {
	qa "SELECT round(bench_ms(\$bench\$$1\$bench\$)::numeric, 1)"
}

# the cost of the audit row: guid_next('svc') beside guid_next()
qa "CREATE FUNCTION bench_pinned(text) RETURNS guid AS '\$libdir/guid', 'guid_next_audited'
	LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp" >/dev/null
plain_runs=""
audited_runs=""
apinned_runs=""
for ((rep = 0; rep < BENCH_REPEATS; rep++)); do
	plain_runs+=" $(atime_ms "SELECT count(guid_next()) FROM generate_series(1, $AUDIT_N)")"
	audited_runs+=" $(atime_ms "SELECT count(guid_next('bench')) FROM generate_series(1, $AUDIT_N)")"
	apinned_runs+=" $(atime_ms "SELECT count(bench_pinned('bench')) FROM generate_series(1, $AUDIT_N)")"
done
# shellcheck disable=SC2086
plain_ms=$(median $plain_runs)
# shellcheck disable=SC2086
audited_ms=$(median $audited_runs)
# shellcheck disable=SC2086
apinned_ms=$(median $apinned_runs)
echo "SELECT guid_next();" >"$DIR/pgbench-plain.sql"
echo "SELECT guid_next('bench');" >"$DIR/pgbench-audit.sql"
# the same write without guid: one row into a like table per transaction
qa "CREATE TABLE bench_ref (id bigint PRIMARY KEY, node_id int, created_at timestamptz, service text); CREATE SEQUENCE bench_ref_seq CACHE 1000"
echo "INSERT INTO bench_ref VALUES (nextval('bench_ref_seq'), 5, now(), 'bench');" >"$DIR/pgbench-ref.sql"
pp_runs=""
pa_runs=""
pr_runs=""
for ((rep = 0; rep < PGBENCH_REPEATS; rep++)); do
	for f in plain audit ref; do
		out=$(as_pg pgbench -n -c 2 -j 2 -T "$PGBENCH_SECONDS" -h "$ADIR" -p "$APORT" -U postgres \
			-f "$DIR/pgbench-$f.sql" postgres 2>"$DIR/pgbench.err") ||
			{ cat "$DIR/pgbench.err" >&2; exit 1; }
		tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
		case $f in
		plain) pp_runs+=" $tps" ;;
		audit) pa_runs+=" $tps" ;;
		ref) pr_runs+=" $tps" ;;
		esac
	done
done
# shellcheck disable=SC2086
pp_tps=$(median $pp_runs)
# shellcheck disable=SC2086
pa_tps=$(median $pa_runs)
# shellcheck disable=SC2086
pr_tps=$(median $pr_runs)
# sustained rate into Kafka, then latency at 5,000 rows/s (test/bench/stream.sh)
stream_drain "$DRAIN_N" drain
stream_latency "$PGBENCH_SECONDS" latency
load_ms=$STREAM_LOAD_MS
drain_ms=$STREAM_DRAIN_MS
drain_commits=$STREAM_DRAIN_COMMITS
lat_tps=$STREAM_LAT_TPS
lat_n=$STREAM_LAT_N lat_p50=$STREAM_LAT_P50 lat_p99=$STREAM_LAT_P99 lat_max=$STREAM_LAT_MAX
commit_ms=$STREAM_COMMIT_MS

echo "Audit stream: guid_next(service) and the publisher into a local KRaft Kafka (median of repeats)"
printf '%-60s %12s %10s\n' "bulk $AUDIT_N guid_next() (ms)" "$(fmt '%.1f' "$plain_ms")" "1.00x"
printf '%-60s %12s %10s\n' "bulk $AUDIT_N guid_next('bench'), one audit row each (ms)" "$(fmt '%.1f' "$audited_ms")" "$(ratio "$audited_ms" "$plain_ms")"
printf '%-60s %12s\n' "  cost of the audit row per call" "$(fmt '%.2f' "($audited_ms - $plain_ms) * 1000 / $AUDIT_N") us"
printf '%-60s %12s %10s\n' "  the same as SECURITY DEFINER SET search_path (not shipped)" "$(fmt '%.1f' "$apinned_ms")" "$(ratio "$apinned_ms" "$plain_ms")"
printf '%-60s %12s\n' "  cost of the pinned search_path per call" "$(fmt '%.2f' "($apinned_ms - $audited_ms) * 1000 / $AUDIT_N") us"
printf '%-60s %12s %10s\n' "pgbench -c 2 SELECT guid_next() tps" "$(fmt '%.0f' "$pp_tps")" "1.00x"
printf '%-60s %12s %10s\n' "pgbench -c 2 SELECT guid_next('bench') tps" "$(fmt '%.0f' "$pa_tps")" "$(ratio "$pa_tps" "$pp_tps")"
printf '%-60s %12s %10s\n' "pgbench -c 2 INSERT one like row (nextval), reference tps" "$(fmt '%.0f' "$pr_tps")" "$(ratio "$pr_tps" "$pp_tps")"
echo "(a transaction that writes a row waits for its WAL flush at commit; plain guid_next() writes nothing)"
printf '%-60s %12s\n' "backlog of $DRAIN_N rows written by 2 clients in" "$load_ms ms"
printf '%-60s %12s\n' "  published from the slot to Kafka (exactly once) in" "$drain_ms ms"
printf '%-60s %12s\n' "  sustained rate into Kafka" "$(fmt '%.0f' "$DRAIN_N / $drain_ms * 1000")/s"
printf '%-60s %12s\n' "  Kafka transactions it took" "$drain_commits"
printf '%-60s %12s\n' "single-row transactions at -R 5000 (achieved tps)" "$(fmt '%.0f' "$lat_tps")"
printf '%-60s %12s\n' "  created_at -> consumer latency p50 ($lat_n rows)" "$lat_p50 ms"
printf '%-60s %12s\n' "  created_at -> consumer latency p99" "$lat_p99 ms"
printf '%-60s %12s\n' "  created_at -> consumer latency max" "$lat_max ms"
printf '%-60s %12s\n' "  last Kafka commit_transaction (guid.status)" "$commit_ms ms"
echo "(latency: from the guid's time, taken inside the inserting transaction, to the read_committed consumer's poll)"
echo

fi

#
# 7. Failover: a streaming standby promoted
#

if section failover; then
	# shellcheck source=failover.sh
	. "$ROOT/test/bench/failover.sh"
fi

#
# 8. The HTTP gateway (last: it restarts the scratch cluster with more
#    connections)
#

if section gateway; then
	# shellcheck source=gateway.sh
	. "$ROOT/test/bench/gateway.sh"
fi

#
# Targets: figures only, nothing fails on a miss
#

echo "Targets (measured, then target)"
if section bulk; then
	printf '%-52s %10s %12s\n' "bulk    guid_next / count(clock_timestamp()) floor" "$(ratio "${bulk_ms[0]}" "$floor")" "<= 1.2x"
fi
if section pgbench; then
	printf '%-52s %10s %12s\n' "pgbench guid_next / SELECT 1 (tps)" "$(ratio "${pgb_tps[0]}" "$select1")" ">= 0.9x"
fi
if section insert; then
	printf '%-52s %10s %12s\n' "insert  guid_next time / nextval CACHE 1000 time" "$(ratio "${ins_ms[0]}" "$ins_ref")" "<= 1.0x"
	printf '%-52s %10s %12s\n' "index   guid PK size / bigint PK size" "$(ratio "${ins_mb[0]}" "$idx_ref")" "1.0x"
fi
if section leased; then
	printf '%-52s %10s %12s\n' "leased  bulk guid_next leased / standalone time" "$(ratio "$lb_ms" "$sb_ms")" "~1.0x"
fi
if section idem; then
	printf '%-52s %10s %12s\n' "idem    round-trip floor rate / single-call rate" "$(ratio "$floor_rps" "$single_rps")" "<= 1.2x"
	printf '%-52s %10s %12s\n' "idem    p99 latency of one call" "$p99_ms ms" "<= 1 ms"
	printf '%-52s %10s %12s\n' "idem    batch rate / single-call rate" "$(ratio "$batch_rps" "$single_rps")" ">= 10x"
fi
if section audit; then
	printf '%-52s %10s %12s\n' "audit   rows/s into Kafka, exactly once" "$(fmt '%.0f' "$DRAIN_N / $drain_ms * 1000")" ">= 50000"
	printf '%-52s %10s %12s\n' "audit   latency p99 at 5,000 rows/s" "$lat_p99 ms" "<= 50 ms"
fi
if section gateway; then
	# met / not met: awk compares, nothing fails on a miss
	printf '%-52s %10s %12s  %s\n' "gateway generate p99 (JWT HS256, 64 connections)" "${gw_p99[2]} ms" "<= 5 ms" \
		"$(awk -v v="${gw_p99[2]}" 'BEGIN { print (v <= 5 ? "met" : "not met") }')"
	printf '%-52s %10s %12s  %s\n' "gateway generate p99 (auth = off)" "${gw_p99[1]} ms" "<= 5 ms" \
		"$(awk -v v="${gw_p99[1]}" 'BEGIN { print (v <= 5 ? "met" : "not met") }')"
	printf '%-52s %10s %12s  %s\n' "gateway generate (JWT HS256) / GET /healthz (req/s)" "$(ratio "${gw_rps[2]}" "$gw_floor")" ">= 0.5x" \
		"$(awk -v a="${gw_rps[2]}" -v b="$gw_floor" 'BEGIN { print (a >= 0.5 * b ? "met" : "not met") }')"
	printf '%-52s %10s %12s  %s\n' "gateway generate (auth = off) / GET /healthz (req/s)" "$(ratio "${gw_rps[1]}" "$gw_floor")" ">= 0.5x" \
		"$(awk -v a="${gw_rps[1]}" -v b="$gw_floor" 'BEGIN { print (a >= 0.5 * b ? "met" : "not met") }')"
fi
