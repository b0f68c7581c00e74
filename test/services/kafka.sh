#!/usr/bin/env bash
# kafka.sh start DIR PORT | resume DIR | stop DIR
#
# A single Apache Kafka broker in KRaft mode (broker and controller in one
# process) on 127.0.0.1:PORT, its controller on PORT+1, data and log under
# DIR.  The jars come from Maven Central through test/services/kafka/pom.xml
# and are kept in $GUID_RUN_DIR/kafka-libs between runs.  Settings for one
# broker: replication factor 1 for offsets and transaction state, so that
# transactional producers work.  Never touches a system-wide instance.
# `resume` starts a stopped broker again with its data (for outage tests);
# `start` always begins with an empty one.
#
# Checked here: Debian's librdkafka 2.0.2 runs init/commit/abort
# transactions against it, and a read_committed consumer sees only committed
# messages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

cmd=${1:?usage: kafka.sh start DIR PORT | resume DIR | stop DIR}
dir=${2:?DIR missing}
libs=$GUID_RUN_DIR/kafka-libs

case "$cmd" in
start)
	port=${3:?PORT missing}
	if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
		echo "kafka.sh: already running in $dir" >&2
		exit 0
	fi
	if [ ! -f "$libs/.complete" ]; then
		rm -rf "$libs"
		mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
			-DoutputDirectory="$libs" -DincludeScope=runtime
		touch "$libs/.complete"
	fi
	rm -rf "$dir"
	mkdir -p "$dir"
	cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
PROPS
	cat >"$dir/log4j.properties" <<LOG
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$dir/kafka.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG
	java_opts=(-Xmx512m -cp "$libs/*" -Dlog4j.configuration="file:$dir/log4j.properties")
	cluster_id=$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)
	java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
		-c "$dir/server.properties" >"$dir/format.log"
	;;
esac

case "$cmd" in
start | resume)
	port=$(sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/server.properties")
	java_opts=(-Xmx512m -cp "$libs/*" -Dlog4j.configuration="file:$dir/log4j.properties")
	nohup java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" \
		>"$dir/stdout.log" 2>&1 </dev/null &
	echo $! >"$dir/kafka.pid"
	for _ in $(seq 1 300); do
		if kcat -b "127.0.0.1:$port" -L -m 1 >/dev/null 2>&1; then
			exit 0
		fi
		kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null ||
			{ echo "kafka.sh: Kafka exited; see $dir" >&2; tail -20 "$dir/kafka.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "kafka.sh: Kafka did not answer on 127.0.0.1:$port within 30 s" >&2
	exit 1
	;;
stop)
	stop_pidfile "$dir/kafka.pid"
	;;
esac

case "$cmd" in
start | resume | stop) ;;
*)
	echo "usage: kafka.sh start DIR PORT | resume DIR | stop DIR" >&2
	exit 2
	;;
esac
