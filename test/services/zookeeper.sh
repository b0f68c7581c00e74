#!/usr/bin/env bash
# zookeeper.sh start DIR PORT | stop DIR | status DIR
#
# A standalone ZooKeeper (Debian's package, run with java) listening on
# 127.0.0.1:PORT, with its data, log and pid file under DIR.  tickTime is
# 500 ms and sessions may be 1 s to 60 s long, so tests can use short
# session timeouts.  Never touches a system-wide instance.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cmd=${1:?usage: zookeeper.sh start DIR PORT | stop DIR | status DIR}
dir=${2:?DIR missing}

zk_alive() {
	[ -f "$dir/zookeeper.pid" ] && kill -0 "$(cat "$dir/zookeeper.pid")" 2>/dev/null
}

# ruok: ZooKeeper's four-letter health check, answered "imok".
zk_ruok() {
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'ruok' >&3
	local answer
	answer=$(timeout 2 cat <&3 || true)
	exec 3<&-
	[ "$answer" = imok ]
}

case "$cmd" in
start)
	port=${3:?PORT missing}
	if zk_alive; then
		echo "zookeeper.sh: already running in $dir" >&2
		exit 0
	fi
	mkdir -p "$dir/data" "$dir/conf"
	cat >"$dir/conf/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
minSessionTimeout=1000
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,dump
CFG
	cat >"$dir/conf/log4j.properties" <<'LOG'
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
LOG
	nohup java -Xmx256m -Dzookeeper.log.dir="$dir" -Dzookeeper.jmx.log4j.disable=true \
		-cp "$dir/conf:/usr/share/java/zookeeper.jar" \
		org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/conf/zoo.cfg" \
		>"$dir/stdout.log" 2>&1 </dev/null &
	echo $! >"$dir/zookeeper.pid"
	for _ in $(seq 1 300); do
		if zk_ruok "$port" 2>/dev/null; then
			exit 0
		fi
		zk_alive || { echo "zookeeper.sh: ZooKeeper exited; see $dir" >&2; cat "$dir/stdout.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "zookeeper.sh: ZooKeeper did not answer on 127.0.0.1:$port within 30 s" >&2
	exit 1
	;;
stop)
	stop_pidfile "$dir/zookeeper.pid"
	;;
status)
	zk_alive
	;;
*)
	echo "usage: zookeeper.sh start DIR PORT | stop DIR | status DIR" >&2
	exit 2
	;;
esac
