# stream.sh: the audit stream's two figures, shared by bench.sh (section
# audit, one broker) and fleet_stream.sh (one broker beside three).  Source
# it after test/services/lib.sh; it defines functions and changes nothing by
# itself.  The cluster measured must be built with GUID_FAULT_INJECTION=1
# (the drain holds the publisher back with guid.publisher_test_pause).
#
# The cluster and Kafka measured are named by these variables, set before
# each call:
#   STREAM_DIR, STREAM_PORT  the scratch cluster (lib.sh's scratch_start)
#   STREAM_BROKERS           its guid.kafka_brokers
#   STREAM_WORK              a directory the PostgreSQL user can read, for
#                            pgbench scripts and the consumer's output
#   ROOT                     the checkout (guid_consumer is built there)
#
# The figures come back in STREAM_* variables (below).  Nothing here passes
# or fails on time: a function fails only when something breaks (the
# publisher stuck, rows missing from the topic).

# free_port: a TCP port nothing listens on, as PostgreSQL::Test::Cluster
# picks them: from a random start in the dynamic range, the first free one.
free_port() {
	local port=$((49152 + RANDOM % 16000)) i
	for ((i = 0; i < 1000; i++, port++)); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
			! grep -q ":$(printf '%04X' "$port") " /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	echo "no free port" >&2
	return 1
}

# stream_cluster_start DIR PORT BROKERS NODE_ID [CONF_LINE...]: a fresh
# scratch cluster in DIR on PORT publishing to BROKERS (wal_level logical,
# node id NODE_ID, and the given postgresql.conf lines), the
# extension created, its publisher streaming; it becomes the measured one
# (STREAM_DIR, STREAM_PORT, STREAM_BROKERS).  The caller stops it
# (scratch_stop DIR).
stream_cluster_start() {
	local dir=$1 port=$2 brokers=$3 conf=("guid.node_id = $4" "wal_level = logical" "guid.kafka_brokers = '$3'")
	shift 4
	conf+=("$@")
	if "$PG_BIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
		conf+=("output_plugin_libraries = 'pgoutput, test_decoding, guid'")
	fi
	scratch_stop "$dir"
	run_dir_make "$dir"
	scratch_start "$dir" "$port" "${conf[@]}" || return 1
	STREAM_DIR=$dir STREAM_PORT=$port STREAM_BROKERS=$brokers
	stream_q 'CREATE EXTENSION guid' || return 1
	stream_wait_streaming
}

# stream_q SQL: run SQL in the measured cluster, unaligned tuples only.
stream_q() {
	scratch_psql "$STREAM_DIR" "$STREAM_PORT" -At -c "$1"
}

stream_now_ms() {
	date +%s%3N
}

# stream_wait_streaming: wait (up to 5 minutes) until the publisher streams.
stream_wait_streaming() {
	local deadline=$(($(stream_now_ms) + 300000))
	while [ "$(stream_now_ms)" -lt "$deadline" ]; do
		[ "$(stream_q "SELECT publisher_state FROM guid.status")" = streaming ] && return 0
		sleep 0.1
	done
	echo "stream: the publisher did not start: $(stream_q 'SELECT publisher_error FROM guid.status')" >&2
	return 1
}

# stream_wait_published N: wait until rows_published >= N, polling every
# 10 ms: up to 10 minutes (a shared machine can be very slow; the figures
# say how long it took, this only catches a publisher that is stuck).
stream_wait_published() {
	local want=$1 deadline=$(($(stream_now_ms) + 600000))
	while [ "$(stream_now_ms)" -lt "$deadline" ]; do
		[ "$(stream_q "SELECT rows_published >= $want FROM guid.status")" = t ] && return 0
		sleep 0.01
	done
	echo "stream: the publisher did not publish $want rows: $(stream_q 'SELECT publisher_error FROM guid.status')" >&2
	return 1
}

# stream_drain N SERVICE: the sustained rate into Kafka.  A backlog of N rows
# of service SERVICE (2 clients, transactions of 1000 rows) is written while
# the publisher is held before its first produce, then released and timed
# until it has published them all; the topic must then hold exactly N rows
# of SERVICE (kcat, read_committed).  N is a multiple of 2000.  Sets
# STREAM_LOAD_MS (writing the backlog), STREAM_DRAIN_MS (publishing it) and
# STREAM_DRAIN_COMMITS (the Kafka transactions that took).
stream_drain() {
	local n=$1 svc=$2 start pub_before commits_before in_topic
	stream_wait_published "$(stream_q 'SELECT count(*) FROM guid.audit')" || return 1
	stream_q "ALTER SYSTEM SET guid.publisher_test_pause = 'before_produce'" >/dev/null
	stream_q "SELECT pg_reload_conf()" >/dev/null
	start=$(stream_now_ms)
	echo "SELECT count(guid_next('$svc')) FROM generate_series(1, 1000);" >"$STREAM_WORK/pgbench-drain.sql"
	as_pg pgbench -n -c 2 -j 2 -t $((n / 2000)) -h "$STREAM_DIR" -p "$STREAM_PORT" -U postgres \
		-f "$STREAM_WORK/pgbench-drain.sql" postgres >/dev/null 2>"$STREAM_WORK/pgbench.err" ||
		{ cat "$STREAM_WORK/pgbench.err" >&2; return 1; }
	STREAM_LOAD_MS=$(($(stream_now_ms) - start))
	pub_before=$(stream_q "SELECT rows_published FROM guid.status")
	commits_before=$(stream_q "SELECT kafka_commits FROM guid.status")
	start=$(stream_now_ms)
	stream_q "ALTER SYSTEM RESET guid.publisher_test_pause" >/dev/null
	stream_q "SELECT pg_reload_conf()" >/dev/null
	stream_wait_published "$((pub_before + n))" || return 1
	STREAM_DRAIN_MS=$(($(stream_now_ms) - start))
	STREAM_DRAIN_COMMITS=$(($(stream_q "SELECT kafka_commits FROM guid.status") - commits_before))
	in_topic=$(kcat -C -b "$STREAM_BROKERS" -t guid_assignments -X isolation.level=read_committed \
		-o beginning -e -q -f '%k\n' | grep -c "^$svc\$" || true)
	[ "$in_topic" = "$n" ] || { echo "stream: $in_topic $svc rows in the topic, not $n" >&2; return 1; }
}

# stream_latency SECONDS SERVICE [CLIENTS]: commit-to-consumer latency at a
# fixed 5,000 rows/s (pgbench -R 5000, CLIENTS clients (default 4: each waits
# for its commit's WAL flush, so a slow disk needs more to reach the rate),
# single-row transactions of service SERVICE) for SECONDS, measured by the
# reference consumer
# (guid_consumer --latency-only, read_committed) from each row's created_at,
# taken inside the inserting transaction, to its poll.  Sets STREAM_LAT_TPS
# (achieved), STREAM_LAT_N, STREAM_LAT_P50, STREAM_LAT_P99, STREAM_LAT_MAX
# (ms), STREAM_LAT_COMMITS (Kafka transactions during the run) and
# STREAM_COMMIT_MS (guid.status kafka_commit_ms, the last commit's time).
stream_latency() {
	local secs=$1 svc=$2 clients=${3:-4} lat_pid out out_rate commits_before
	out=$STREAM_WORK/latency.out
	stream_wait_published "$(stream_q 'SELECT count(*) FROM guid.audit')" || return 1
	"$ROOT/guid_consumer" --brokers "$STREAM_BROKERS" --topic guid_assignments --latency-only \
		--idle-exit 10 >"$out" 2>"$STREAM_WORK/latency.err" &
	lat_pid=$!
	sleep 2		# the consumer's assignment (it starts at the end of the partition)
	commits_before=$(stream_q "SELECT kafka_commits FROM guid.status")
	echo "SELECT guid_next('$svc');" >"$STREAM_WORK/pgbench-lat.sql"
	out_rate=$(as_pg pgbench -n -c "$clients" -j 2 -R 5000 -T "$secs" -h "$STREAM_DIR" -p "$STREAM_PORT" -U postgres \
		-f "$STREAM_WORK/pgbench-lat.sql" postgres 2>"$STREAM_WORK/pgbench.err") ||
		{ cat "$STREAM_WORK/pgbench.err" >&2; kill "$lat_pid" 2>/dev/null; return 1; }
	wait "$lat_pid" || { cat "$STREAM_WORK/latency.err" >&2; return 1; }
	STREAM_LAT_COMMITS=$(($(stream_q "SELECT kafka_commits FROM guid.status") - commits_before))
	STREAM_LAT_TPS=$(awk '/^tps = / { printf "%.0f", $3; exit }' <<<"$out_rate")
	read -r STREAM_LAT_N STREAM_LAT_P50 STREAM_LAT_P99 STREAM_LAT_MAX < <(awk '/^latency_ms/ { print $3, $5, $7, $9 }' "$out") ||
		{ echo "stream: the consumer measured nothing (it leaves after 10 s without a row): $(cat "$STREAM_WORK/latency.err")" >&2; return 1; }
	STREAM_COMMIT_MS=$(stream_q "SELECT round(kafka_commit_ms::numeric, 1) FROM guid.status")
}
