# failover.sh: the 'failover' section of bench.sh (sourced by it, using its
# helpers): a primary publishing to a private Kafka and a streaming standby
# made with pg_basebackup -R; audit rows are written and replicated, the
# primary (its publisher held, so that none of them is in Kafka yet) is
# stopped (immediate, as a crash) and the standby promoted.
# Prints the time from `pg_ctl promote` to the first ID the promoted server
# issues, and to its publisher streaming again, median of FAILOVER_REPEATS
# (default 3), and what guid.status says the publisher did on failover.

FDIR=$GUID_RUN_DIR/bench-failover
FKAFKA_DIR=$GUID_RUN_DIR/bench-failover-kafka
FKAFKA_PORT=$((${GUID_KAFKA_PORT:-59192} + 2))
FAILOVER_REPEATS=${FAILOVER_REPEATS:-3}
[ "${BENCH_QUICK:-0}" = 1 ] && FAILOVER_REPEATS=1
"$ROOT/test/services/kafka.sh" stop "$FKAFKA_DIR"
"$ROOT/test/services/kafka.sh" start "$FKAFKA_DIR" "$FKAFKA_PORT"
cleanup_failover() {
	scratch_stop "$FDIR/primary"
	scratch_stop "$FDIR/standby"
	"$ROOT/test/services/kafka.sh" stop "$FKAFKA_DIR"
}
at_exit cleanup_failover

# fo_psql DIR PORT SQL: one query, unaligned; fails like scratch_psql.
fo_psql() {
	scratch_psql "$1" "$2" -At -c "$3"
}

# fo_status DIR PORT FIELD: a guid.status field by name, "" when the
# installed version has no such column.
fo_status() {
	fo_psql "$1" "$2" "SELECT coalesce(to_jsonb(s) ->> '$3', '') FROM guid.status s"
}

# One failover: fills fo_id_ms, fo_stream_ms and fo_note.
fo_round() {
	local round=$1 pport sport topic t0 t i
	pport=$(free_port)
	topic="bench_failover_$round"
	scratch_stop "$FDIR/primary"
	scratch_stop "$FDIR/standby"
	run_dir_make "$FDIR"
	local conf=("guid.node_id = 9" "wal_level = logical" "guid.kafka_brokers = '127.0.0.1:$FKAFKA_PORT'"
		"guid.kafka_topic = '$topic'")
	if "$PG_BIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
		conf+=("output_plugin_libraries = 'pgoutput, test_decoding, guid'")
	fi
	scratch_start "$FDIR/primary" "$pport" "${conf[@]}"
	fo_psql "$FDIR/primary" "$pport" 'CREATE EXTENSION guid' >/dev/null
	for ((i = 0; i < 600; i++)); do
		[ "$(fo_status "$FDIR/primary" "$pport" publisher_state)" = streaming ] && break
		sleep 0.1
	done

	# the standby: a base backup, its own port and socket directory
	sport=$(free_port)
	as_pg mkdir -p "$FDIR/standby"
	as_pg pg_basebackup -h "$FDIR/primary" -p "$pport" -U postgres -D "$FDIR/standby/data" \
		-R -X stream -c fast >/dev/null
	printf "port = %s\nunix_socket_directories = '%s'\n" "$sport" "$FDIR/standby" |
		as_pg tee -a "$FDIR/standby/data/postgresql.conf" >/dev/null
	scratch_run "$FDIR/standby"

	# audit rows committed and replicated but not yet in Kafka: the primary's
	# publisher is held (the test build's pause; ALTER SYSTEM is not
	# replicated), so the promoted standby has to publish them itself
	fo_psql "$FDIR/primary" "$pport" "ALTER SYSTEM SET guid.publisher_test_pause = 'before_produce'" >/dev/null
	fo_psql "$FDIR/primary" "$pport" 'SELECT pg_reload_conf()' >/dev/null
	fo_psql "$FDIR/primary" "$pport" \
		"SELECT count(guid_next('bench')) FROM generate_series(1, 20000)" >/dev/null
	t=$(fo_psql "$FDIR/primary" "$pport" 'SELECT pg_current_wal_flush_lsn()')
	for ((i = 0; i < 600; i++)); do
		[ "$(fo_psql "$FDIR/standby" "$sport" "SELECT pg_last_wal_replay_lsn() >= '$t'")" = t ] && break
		sleep 0.1
	done

	as_pg pg_ctl -D "$FDIR/primary/data" -m immediate -w stop >/dev/null
	t0=$(now_ms)
	as_pg pg_ctl -D "$FDIR/standby/data" promote >/dev/null
	fo_id_ms=""
	for ((i = 0; i < 6000; i++)); do
		if fo_psql "$FDIR/standby" "$sport" 'SELECT guid_next()' >/dev/null 2>&1; then
			fo_id_ms=$(($(now_ms) - t0))
			break
		fi
		sleep 0.01
	done
	fo_stream_ms=""
	for ((i = 0; i < 6000; i++)); do
		if [ "$(fo_status "$FDIR/standby" "$sport" publisher_state)" = streaming ]; then
			fo_stream_ms=$(($(now_ms) - t0))
			break
		fi
		sleep 0.01
	done
	fo_note="republished $(fo_status "$FDIR/standby" "$sport" publisher_failover_republished)"
	fo_note+=", duplicates $(fo_status "$FDIR/standby" "$sport" publisher_failover_duplicates)"
	fo_note+=", missing $(fo_status "$FDIR/standby" "$sport" publisher_failover_missing)"
	scratch_stop "$FDIR/standby"
	[ -n "$fo_id_ms" ] || { echo "bench: the promoted standby issued no ID within 60 s" >&2; exit 1; }
	[ -n "$fo_stream_ms" ] || {
		echo "bench: the promoted standby's publisher did not stream within 60 s" >&2
		exit 1
	}
}

fo_id_runs=""
fo_stream_runs=""
for ((rep = 0; rep < FAILOVER_REPEATS; rep++)); do
	fo_round "$rep"
	fo_id_runs+=" $fo_id_ms"
	fo_stream_runs+=" $fo_stream_ms"
done

echo "Failover: standalone primary stopped -m immediate with 20,000 replicated audit rows not yet in Kafka, streaming standby promoted (median of $FAILOVER_REPEATS)"
# shellcheck disable=SC2086
printf '%-60s %12s\n' "pg_ctl promote -> first guid_next() on the new primary" "$(median $fo_id_runs) ms"
# shellcheck disable=SC2086
printf '%-60s %12s\n' "pg_ctl promote -> its publisher streaming (rows republished)" "$(median $fo_stream_runs) ms"
printf '%-60s %12s\n' "  last round, guid.status of the new primary:" "$fo_note"
echo "(polled every 10 ms; the first ID needs the end of recovery, the publisher a new slot and its Kafka session)"
echo
