#!/usr/bin/env bash
# kafka.sh start DIR PORT [BROKERS] | resume DIR | stop DIR
#
# Apache Kafka in KRaft mode on loopback, data and logs under DIR.  The jars
# come from Maven Central through test/services/kafka/pom.xml and are kept
# in $GUID_RUN_DIR/kafka-libs between runs.  Never touches a system-wide
# instance.  `start` always begins with empty data.
#
# BROKERS 1 (the default): one process, broker and controller, on
# 127.0.0.1:PORT, its controller on PORT+1; replication factor 1 for offsets
# and transaction state, so that transactional producers work.
#
# BROKERS 3: a replicated cluster of three combined broker+controller
# processes (node ids 1..3, a 3-voter controller quorum) in DIR/1..DIR/3;
# node i serves clients on PORT+2(i-1) and its controller listens on the
# port after it.  Offsets and transaction state have replication factor 3
# and transaction.state.log.min.isr 2, so a transaction survives the loss
# of one broker; a broker missing its heartbeats for 3 s is fenced (its
# partitions move to another leader).  `start` waits until every broker
# answers and the cluster reports all three.
#
# `resume DIR` starts a stopped broker (DIR, or DIR/i of a cluster) again
# with its data (for outage tests); `stop DIR` stops every broker under DIR.
#
# Checked here: Debian's librdkafka 2.0.2 runs init/commit/abort
# transactions against it, and a read_committed consumer sees only committed
# messages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

usage="usage: kafka.sh start DIR PORT [BROKERS] | resume DIR | stop DIR"
cmd=${1:?$usage}
dir=${2:?DIR missing}
libs=$GUID_RUN_DIR/kafka-libs

kafka_alive() {
	[ -f "$1/kafka.pid" ] && kill -0 "$(cat "$1/kafka.pid")" 2>/dev/null
}

kafka_port() {
	sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$1/server.properties"
}

# One broker in each process of a cluster: 512 MB of heap alone, 256 MB in a
# cluster of three (measured: README, "Running a fleet").
kafka_java_opts() {
	local heap=512m
	grep -q '^controller.quorum.voters=.*,' "$1/server.properties" && heap=256m
	java_opts=(-Xmx$heap -cp "$libs/*" -Dlog4j.configuration="file:$1/log4j.properties")
}

# kafka_config NDIR NODE PORT VOTERS REPLICAS: server.properties and
# log4j.properties of one node.
kafka_config() {
	local ndir=$1 node=$2 port=$3 voters=$4 replicas=$5 min_isr=1
	[ "$replicas" -ge 3 ] && min_isr=2
	mkdir -p "$ndir"
	cat >"$ndir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$ndir/data
num.partitions=1
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
PROPS
	if [ "$replicas" -gt 1 ]; then
		cat >>"$ndir/server.properties" <<PROPS
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
PROPS
	fi
	cat >"$ndir/log4j.properties" <<LOG
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$ndir/kafka.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG
}

# kafka_launch NDIR: start the node configured in NDIR, in the background.
kafka_launch() {
	kafka_java_opts "$1"
	nohup java "${java_opts[@]}" kafka.Kafka "$1/server.properties" \
		>>"$1/stdout.log" 2>&1 </dev/null &
	echo $! >"$1/kafka.pid"
}

# kafka_wait NDIR [BROKERS]: wait until the node answers (and reports
# BROKERS brokers in its metadata), 30 s at most.
kafka_wait() {
	local port
	port=$(kafka_port "$1")
	for _ in $(seq 1 300); do
		if kcat -b "127.0.0.1:$port" -L -m 1 2>/dev/null | grep -q "^ *${2:-[0-9]*} brokers:"; then
			return 0
		fi
		kafka_alive "$1" ||
			{ echo "kafka.sh: Kafka exited; see $1" >&2; tail -20 "$1/kafka.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "kafka.sh: Kafka did not answer on 127.0.0.1:$port within 30 s" >&2
	exit 1
}

case "$cmd" in
start)
	port=${3:?PORT missing}
	brokers=${4:-1}
	if kafka_alive "$dir" || kafka_alive "$dir/1"; then
		echo "kafka.sh: already running in $dir" >&2
		exit 0
	fi
	[ "$brokers" = 1 ] || [ "$brokers" = 3 ] || { echo "kafka.sh: BROKERS is 1 or 3" >&2; exit 2; }
	if [ ! -f "$libs/.complete" ]; then
		rm -rf "$libs"
		mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
			-DoutputDirectory="$libs" -DincludeScope=runtime
		touch "$libs/.complete"
	fi
	rm -rf "$dir"
	nodes=()
	if [ "$brokers" = 1 ]; then
		kafka_config "$dir" 1 "$port" "1@127.0.0.1:$((port + 1))" 1
		nodes=("$dir")
	else
		voters=
		for i in 1 2 3; do
			voters+="${voters:+,}$i@127.0.0.1:$((port + 2 * (i - 1) + 1))"
		done
		for i in 1 2 3; do
			kafka_config "$dir/$i" "$i" $((port + 2 * (i - 1))) "$voters" 3
			nodes+=("$dir/$i")
		done
	fi
	java_opts=(-cp "$libs/*" -Dlog4j.configuration="file:${nodes[0]}/log4j.properties")
	cluster_id=$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)
	pids=()
	for n in "${nodes[@]}"; do
		java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
			-c "$n/server.properties" >"$n/format.log" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	for n in "${nodes[@]}"; do kafka_launch "$n"; done
	for n in "${nodes[@]}"; do kafka_wait "$n" "$brokers"; done
	;;
resume)
	kafka_alive "$dir" && exit 0
	kafka_launch "$dir"
	kafka_wait "$dir"
	;;
stop)
	for n in "$dir" "$dir"/[0-9]; do
		if [ -d "$n" ]; then stop_pidfile "$n/kafka.pid"; fi
	done
	;;
*)
	echo "$usage" >&2
	exit 2
	;;
esac
