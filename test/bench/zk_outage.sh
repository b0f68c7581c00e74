#!/usr/bin/env bash
# zk_outage.sh: leased generation through a ZooKeeper freeze, and how long a
# new holder of an id waits (issue 13).  Sourced by bench.sh in its 'leased'
# section, with its helpers (scratch_*, as_pg, now_ms, free_port) and a
# ZooKeeper at 127.0.0.1:$ZK_PORT whose pid file is $ZK_DIR/zookeeper.pid.
# The default session timeout (30 s); prints a table, fails on nothing but
# breakage.

ODIR=$GUID_RUN_DIR/bench-outage
OPORT=$(free_port)
OPORT_B=$(free_port)
EPOCH_MS=1735689600000
oconf=("guid.node_id = -1" "guid.zookeeper = '127.0.0.1:$ZK_PORT'" "guid.zookeeper_session_timeout = '30s'")

cleanup_outage() {
	[ -f "$ZK_DIR/zookeeper.pid" ] && kill -CONT "$(cat "$ZK_DIR/zookeeper.pid")" 2>/dev/null || true
	scratch_stop "$ODIR/a"
	scratch_stop "$ODIR/b"
}
at_exit cleanup_outage

qo() { scratch_psql "$ODIR/$1" "$2" -At -c "$3"; }

# load_loop DIR PORT TAG: guid_next() about every 2 ms until stop is set;
# leaves calls|failures|longest_ms in table load_result.
load_sql() {
	cat <<SQL
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS load_ctl (tag text PRIMARY KEY, stop bool NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS load_result (tag text PRIMARY KEY, calls int, failures int, longest_ms float8);
INSERT INTO load_ctl VALUES ('$1', false);
SQL
}
load_do() {
	cat <<SQL
DO \$\$
DECLARE t0 timestamptz; calls int := 0; failures int := 0; longest float8 := 0;
BEGIN
	WHILE NOT (SELECT stop FROM load_ctl WHERE tag = '$1') LOOP
		t0 := clock_timestamp();
		BEGIN PERFORM guid_next(); EXCEPTION WHEN others THEN failures := failures + 1; END;
		longest := greatest(longest, extract(epoch FROM clock_timestamp() - t0) * 1000);
		calls := calls + 1;
		PERFORM pg_sleep(0.002);
	END LOOP;
	INSERT INTO load_result VALUES ('$1', calls, failures, longest);
END \$\$;
SQL
}

run_dir_make "$ODIR"
as_pg rm -rf "$ODIR/a" "$ODIR/b"
scratch_start "$ODIR/a" "$OPORT" "${oconf[@]}" "guid.namespace = 'bench_outage'"
qo a "$OPORT" "CREATE EXTENSION guid"
wait_leased "$ODIR/a" "$OPORT"

# ZooKeeper writes of a busy cluster: the marks written in 30 s of load
qo a "$OPORT" "$(load_sql busy)" >/dev/null
qo a "$OPORT" "$(load_do busy)" >/dev/null &
busy_pid=$!
sleep 2
w0=$(qo a "$OPORT" "SELECT reservation_writes FROM guid.status")
sleep 30
w1=$(qo a "$OPORT" "SELECT reservation_writes FROM guid.status")
qo a "$OPORT" "UPDATE load_ctl SET stop = true WHERE tag = 'busy'" >/dev/null
wait $busy_pid
writes_per_min=$(((w1 - w0) * 2))

# ... and of the same cluster idle (past GUID_IDLE_MS, 10 s): the mark is
# kept ahead all the same, so that calls during an outage find it covered
sleep 12
w0=$(qo a "$OPORT" "SELECT reservation_writes FROM guid.status")
sleep 30
w1=$(qo a "$OPORT" "SELECT reservation_writes FROM guid.status")
idle_writes_per_min=$(((w1 - w0) * 2))

# the ZooKeeper server frozen for 5 s under load
qo a "$OPORT" "$(load_sql freeze)" >/dev/null
qo a "$OPORT" "$(load_do freeze)" >/dev/null &
load_pid=$!
sleep 1
kill -STOP "$(cat "$ZK_DIR/zookeeper.pid")"
sleep 5
kill -CONT "$(cat "$ZK_DIR/zookeeper.pid")"
sleep 2
qo a "$OPORT" "UPDATE load_ctl SET stop = true WHERE tag = 'freeze'" >/dev/null
wait $load_pid
IFS='|' read -r f_calls f_failures f_longest <<<"$(qo a "$OPORT" "SELECT calls, failures, round(longest_ms::numeric, 1) FROM load_result WHERE tag = 'freeze'")"

# clean handover: a stops (fast), b starts at once and takes its id
a_id=$(qo a "$OPORT" "SELECT node_id FROM guid.status")
as_pg pg_ctl -D "$ODIR/a/data" -m fast -w stop >/dev/null
scratch_init "$ODIR/b" "$OPORT_B" "${oconf[@]}" "guid.namespace = 'bench_outage'"
t0=$(now_ms)
scratch_run "$ODIR/b"
qo b "$OPORT_B" "CREATE EXTENSION guid" >/dev/null
wait_leased "$ODIR/b" "$OPORT_B"
first=$(qo b "$OPORT_B" "SELECT guid_next()::bigint")
t1=$(now_ms)
[ "$(qo b "$OPORT_B" "SELECT node_id FROM guid.status")" = "$a_id" ] ||
	{ echo "bench: b did not take a's id $a_id" >&2; exit 1; }
clean_ahead=$(((first >> 22) + EPOCH_MS - t1))
clean_first=$((t1 - t0))

# expiry handover: b busy, its postmaster killed (kill -9); once ZooKeeper
# expired the session, a starts again and takes the id
qo b "$OPORT_B" "$(load_sql busy)" >/dev/null
qo b "$OPORT_B" "$(load_do busy)" >/dev/null 2>&1 &
sleep 3
kill -9 "$(head -1 "$ODIR/b/data/postmaster.pid")"
wait 2>/dev/null || true
as_pg rm -rf "$ODIR/b"
while zk_holds "/guid/bench_outage/nodes/$a_id"; do sleep 0.05; done
t0=$(now_ms)
as_pg pg_ctl -D "$ODIR/a/data" -l "$ODIR/a/server.log" -w start >/dev/null
wait_leased "$ODIR/a" "$OPORT"
first=$(qo a "$OPORT" "SELECT guid_next()::bigint")
t1=$(now_ms)
expiry_ahead=$(((first >> 22) + EPOCH_MS - t1))
expiry_first=$((t1 - t0))

echo "Leased mode through ZooKeeper outages (session timeout 30 s, test/bench/zk_outage.sh)"
printf '%-60s %12s\n' "ZooKeeper mark writes per minute, busy cluster" "$writes_per_min"
printf '%-60s %12s\n' "ZooKeeper mark writes per minute, idle cluster" "$idle_writes_per_min"
printf '%-60s %12s\n' "ZooKeeper frozen 5 s under load: failed calls / calls" "$f_failures / $f_calls"
printf '%-60s %12s\n' "... longest guid_next() call" "$f_longest ms"
printf '%-60s %12s\n' "clean handover: pg_ctl start -> first ID" "$clean_first ms"
printf '%-60s %12s\n' "... first ID ahead of the clock (a wait if > max_clock_ahead)" "$clean_ahead ms"
printf '%-60s %12s\n' "expiry handover: pg_ctl start -> first ID" "$expiry_first ms"
printf '%-60s %12s\n' "... first ID ahead of the clock" "$expiry_ahead ms"
echo
