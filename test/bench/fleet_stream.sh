#!/usr/bin/env bash
# fleet_stream.sh (make fleet-bench): the audit stream on a 3-broker Kafka
# beside one broker, measured in the same run.  Two Kafkas of its own (one
# broker; three combined broker+controller nodes, kafka.sh start DIR PORT 3)
# and one scratch cluster publishing to each: the 3-broker one into a data
# topic guid creates with its defaults (replication factor 3,
# min.insync.replicas 2; acks=all is forced for a transactional producer).
# For each, alternating between the two in every repeat so that the noise
# of a shared machine falls on both alike (test/bench/stream.sh does the
# measuring, as bench.sh's audit section does):
#   - a backlog drained: the publisher held back while N rows are written,
#     then released: rows/s into Kafka, exactly once, and the Kafka
#     transactions it took;
#   - latency at 5,000 rows/s (single-row transactions): created_at to a
#     read_committed consumer's poll, p50/p99/max, the Kafka transactions
#     during the run, and guid.status kafka_commit_ms (the last commit);
#   - before either, Kafka's own floor without guid (test/bench/kafka_floor.c):
#     one record with acks=all, a transaction of one record, and one that
#     also sends offsets (as the publisher's checkpoint does), each timed
#     FLEET_STREAM_FLOOR_ROUNDS times one after the other, p50/p99; and
#     200,000 records produced as fast as they go, acks=all, records/s.
# Medians of the repeats, each repeat's figures beside them.  This is not a
# test: it prints figures and fails only when something breaks (the
# publisher stuck, a row missing from the topic).  It stops everything it
# started, also on an error or Ctrl-C.
#
# Environment:
#   FLEET_STREAM_REPEATS     repeats (default 3)
#   FLEET_STREAM_ROWS        backlog rows, a multiple of 2000 (default 200000)
#   FLEET_STREAM_SECONDS     length of the 5,000 rows/s run (default 10)
#   FLEET_STREAM_FLOOR_ROUNDS  rounds of each floor form (default 200)
#   FLEET_STREAM_CLIENTS     pgbench clients of that run (default 16: each
#                            waits for its commit's WAL flush; bench.sh's 4
#                            reach about 1,300 tps on this machine's disk)
#   FLEET_STREAM_CONF        a postgresql.conf line for both clusters, e.g.
#                            "guid.publisher_conninfo = 'host=127.0.0.1'"
#   FLEET_STREAM_KAFKA_PORT  the one broker's port (its controller takes the
#                            next); the three brokers take +10, +12, +14 from
#                            it (default GUID_KAFKA_PORT+20: inside the
#                            environment's 100-port block, clear of the
#                            services and of the fleet `make test` starts)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
# shellcheck source=../services/lib.sh
. test/services/lib.sh
# shellcheck source=stream.sh
. test/bench/stream.sh

REPEATS=${FLEET_STREAM_REPEATS:-3}
ROWS=${FLEET_STREAM_ROWS:-200000}
SECONDS_RUN=${FLEET_STREAM_SECONDS:-10}
CLIENTS=${FLEET_STREAM_CLIENTS:-16}
K1_PORT=${FLEET_STREAM_KAFKA_PORT:-$((${GUID_KAFKA_PORT:-59092} + 20))}
K3_PORT=$((K1_PORT + 10))
RUN=$GUID_RUN_DIR/fleet-stream
BROKERS1=127.0.0.1:$K1_PORT
BROKERS3=$(for i in 0 1 2; do printf '127.0.0.1:%d,' $((K3_PORT + 2 * i)); done)
BROKERS3=${BROKERS3%,}

# The test flavour: the drain holds the publisher with
# guid.publisher_test_pause (a string compare per publisher step).
install_and_build GUID_FAULT_INJECTION=1
make -s guid_consumer
FLOOR_ROUNDS=${FLEET_STREAM_FLOOR_ROUNDS:-200}

cleanup() {
	scratch_stop "$RUN/pg1"
	scratch_stop "$RUN/pg3"
	test/services/kafka.sh stop "$RUN/kafka1" >/dev/null 2>&1 || true
	test/services/kafka.sh stop "$RUN/kafka3" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -d "$RUN" ]; then cleanup; fi	# what an interrupted earlier run left
run_dir_make "$RUN"
as_pg mkdir -p "$RUN/work"
STREAM_WORK=$RUN/work

echo "== Fleet: the audit stream on 3 brokers beside 1 ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs) =="
start=$(stream_now_ms)
# one after the other: the first fetches the jars both use
test/services/kafka.sh start "$RUN/kafka1" "$K1_PORT" >"$RUN/kafka1.log" 2>&1 ||
	{ cat "$RUN/kafka1.log" >&2; exit 1; }
test/services/kafka.sh start "$RUN/kafka3" "$K3_PORT" 3 >"$RUN/kafka3.log" 2>&1 ||
	{ cat "$RUN/kafka3.log" >&2; exit 1; }
echo "  Kafkas up (1 broker; 3 brokers) in $(($(stream_now_ms) - start)) ms"

# Kafka's own floor, before any cluster runs: "FORM p50 p99 max" lines.
# Not guid: a failure is shown in the table, it does not stop the bench.
# librdkafka 2.0.2's send_offsets_to_transaction has been seen blocking
# here past its timeout (issues #5456, #5511: what the publisher's
# watchdog is for), hence the time limit.
cc -O2 -Wall -Wextra -o "$RUN/kafka_floor" test/bench/kafka_floor.c -lrdkafka
for b in 1 3; do
	brokers=$BROKERS1
	[ "$b" = 3 ] && brokers=$BROKERS3
	timeout 300 "$RUN/kafka_floor" "$brokers" guid_floor "$FLOOR_ROUNDS" "$b" \
		>"$RUN/floor$b" 2>"$RUN/floor$b.err" ||
		echo "  kafka_floor on $b broker(s) failed or timed out (exit $?): $(grep -v '^%[4-7]|' "$RUN/floor$b.err" | tail -1)"
done

P1=$(free_port)
extra=()
[ -n "${FLEET_STREAM_CONF:-}" ] && extra=("$FLEET_STREAM_CONF")
stream_cluster_start "$RUN/pg1" "$P1" "$BROKERS1" 1 "${extra[@]}"
P3=$(free_port)
stream_cluster_start "$RUN/pg3" "$P3" "$BROKERS3" 3 "${extra[@]}"
[ -n "${FLEET_STREAM_CONF:-}" ] && echo "  both clusters with: $FLEET_STREAM_CONF"
topic3=$(kcat -L -b "$BROKERS3" -t guid_assignments 2>/dev/null |
	awk '/partition 0,/ { sub(/.*replicas: /, ""); sub(/, isrs.*/, ""); print "replicas " $0 }')
echo "  data topic on 3 brokers: ${topic3:-unknown}"

# use NAME: make cluster NAME (1 or 3) the measured one
use() {
	if [ "$1" = 1 ]; then
		STREAM_DIR=$RUN/pg1 STREAM_PORT=$P1 STREAM_BROKERS=$BROKERS1
	else
		STREAM_DIR=$RUN/pg3 STREAM_PORT=$P3 STREAM_BROKERS=$BROKERS3
	fi
}

declare -A F	# F[figure,brokers] = space-separated values, one per repeat
add() {
	F[$1,$2]="${F[$1,$2]:-} $3"
}
for ((rep = 1; rep <= REPEATS; rep++)); do
	order="1 3"
	[ $((rep % 2)) = 0 ] && order="3 1"
	for b in $order; do
		use "$b"
		stream_drain "$ROWS" "drain$rep"
		add rate "$b" "$(awk -v n="$ROWS" -v ms="$STREAM_DRAIN_MS" 'BEGIN { printf "%.0f", n / ms * 1000 }')"
		add dcommits "$b" "$STREAM_DRAIN_COMMITS"
		stream_latency "$SECONDS_RUN" "lat$rep" "$CLIENTS"
		add tps "$b" "$STREAM_LAT_TPS"
		add p50 "$b" "$STREAM_LAT_P50"
		add p99 "$b" "$STREAM_LAT_P99"
		add max "$b" "$STREAM_LAT_MAX"
		add lcommits "$b" "$STREAM_LAT_COMMITS"
		add rowsper "$b" "$(awk -v n="$STREAM_LAT_N" -v c="$STREAM_LAT_COMMITS" 'BEGIN { printf "%.1f", c ? n / c : 0 }')"
		add commit "$b" "$STREAM_COMMIT_MS"
		echo "  repeat $rep, $b broker(s): drain $ROWS rows in $STREAM_DRAIN_MS ms ($STREAM_DRAIN_COMMITS transactions);" \
			"5,000 rows/s: p50 $STREAM_LAT_P50 p99 $STREAM_LAT_P99 max $STREAM_LAT_MAX ms, $STREAM_LAT_N rows," \
			"$STREAM_LAT_COMMITS transactions, kafka_commit_ms $STREAM_COMMIT_MS"
	done
done

median() {
	# shellcheck disable=SC2086
	printf '%s\n' $1 | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
row() {
	printf '  %-52s %10s %10s   (%s | %s)\n' "$1" "$(median "${F[$2,1]}")" "$(median "${F[$2,3]}")" \
		"${F[$2,1]# }" "${F[$2,3]# }"
}
echo
echo "  medians of $REPEATS repeats (each repeat: 1 broker | 3 brokers)"
printf '  %-52s %10s %10s\n' "" "1 broker" "3 brokers"
row "backlog of $ROWS rows into Kafka, exactly once (rows/s)" rate
row "  Kafka transactions it took" dcommits
row "single-row transactions at -R 5000, $CLIENTS clients (achieved tps)" tps
row "  created_at -> consumer latency p50 (ms)" p50
row "  created_at -> consumer latency p99 (ms)" p99
row "  created_at -> consumer latency max (ms)" max
row "  Kafka transactions during the run" lcommits
row "  rows per Kafka transaction" rowsper
row "  last commit_transaction, guid.status kafka_commit_ms" commit
echo "  (acks=all; 3 brokers: data topic RF 3, min.insync.replicas 2; figures of a shared machine)"
echo
echo "  Kafka's own floor, no guid: $FLOOR_ROUNDS rounds each, one after the other (p50 / p99 ms)"
printf '  %-52s %10s %10s\n' "" "1 broker" "3 brokers"
floor() {
	printf '  %-52s %10s %10s\n' "$2" \
		"$(awk -v f="$1" '$1 == f { v = $2 " / " $3 } END { print v ? v : "-" }' "$RUN/floor1")" \
		"$(awk -v f="$1" '$1 == f { v = $2 " / " $3 } END { print v ? v : "-" }' "$RUN/floor3")"
}
floor produce "one record, acks=all, until delivered"
floor txn "a transaction of one record"
floor txn+ofs "  with send_offsets_to_transaction (the publisher's)"
printf '  %-52s %10s %10s\n' "200,000 records of 300 B, acks=all, no transaction (rows/s)" \
	"$(awk '$1 == "bulk" { v = $2 } END { print v ? v : "-" }' "$RUN/floor1")" \
	"$(awk '$1 == "bulk" { v = $2 } END { print v ? v : "-" }' "$RUN/floor3")"
