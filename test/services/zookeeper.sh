#!/usr/bin/env bash
# zookeeper.sh start DIR PORT [SERVERS] | resume DIR | stop DIR | status DIR
#
# ZooKeeper (Debian's package, run with java) on loopback, with its data,
# log and pid file under DIR.  tickTime is 500 ms and sessions may be 1 s to
# 60 s long, so tests can use short session timeouts.  maxClientCnxns=0: no
# limit of connections from one address (ZooKeeper's default, 60, refuses
# a fleet's worth of sessions, which all come from 127.0.0.1 here).  Never
# touches a system-wide instance.
#
# SERVERS 1 (the default): a standalone server on 127.0.0.1:PORT.
# SERVERS 3: an ensemble (one quorum) of servers 1..3 in DIR/1..DIR/3;
# server i serves clients on PORT+3(i-1) and talks to its peers on the two
# ports after it.  `start` waits until every server serves (leader or
# follower).  `resume DIR/i` starts a stopped server of the ensemble again
# with its data (for outage tests); `stop DIR` stops every server under DIR.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage="usage: zookeeper.sh start DIR PORT [SERVERS] | resume DIR | stop DIR | status DIR"
cmd=${1:?$usage}
dir=${2:?DIR missing}

zk_alive() {
	[ -f "$1/zookeeper.pid" ] && kill -0 "$(cat "$1/zookeeper.pid")" 2>/dev/null
}

# zk_four PORT CMD: a four-letter command's answer.
zk_four() {
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf '%s' "$2" >&3
	timeout 2 cat <&3 || true
	exec 3<&-
}

# zk_serving SDIR: the server answers as a standalone, leader or follower.
zk_serving() {
	local port
	port=$(sed -n 's/^clientPort=//p' "$1/conf/zoo.cfg")
	zk_four "$port" srvr 2>/dev/null | grep -Eq '^Mode: (standalone|leader|follower)$'
}

# zk_config SDIR PORT [QUORUM]: zoo.cfg and log4j.properties for one server.
zk_config() {
	local sdir=$1 port=$2 quorum=${3:-}
	mkdir -p "$sdir/data" "$sdir/conf"
	cat >"$sdir/conf/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$sdir/data
clientPort=$port
clientPortAddress=127.0.0.1
minSessionTimeout=1000
maxSessionTimeout=60000
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,dump,cons
$quorum
CFG
	cat >"$sdir/conf/log4j.properties" <<'LOG'
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
LOG
}

# zk_launch SDIR: start the server configured in SDIR, in the background.
zk_launch() {
	local sdir=$1 heap=256m
	[ -f "$sdir/data/myid" ] && heap=128m
	nohup java -Xmx$heap -Dzookeeper.log.dir="$sdir" -Dzookeeper.jmx.log4j.disable=true \
		-cp "$sdir/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar" \
		org.apache.zookeeper.server.quorum.QuorumPeerMain "$sdir/conf/zoo.cfg" \
		>>"$sdir/stdout.log" 2>&1 </dev/null &
	echo $! >"$sdir/zookeeper.pid"
}

# zk_wait SDIR...: wait until each server serves (30 s).
zk_wait() {
	local sdir
	for sdir in "$@"; do
		for _ in $(seq 1 300); do
			zk_serving "$sdir" && continue 2
			zk_alive "$sdir" || { echo "zookeeper.sh: ZooKeeper exited; see $sdir" >&2; tail -20 "$sdir/stdout.log" >&2; exit 1; }
			sleep 0.1
		done
		echo "zookeeper.sh: ZooKeeper in $sdir did not serve within 30 s" >&2
		exit 1
	done
}

case "$cmd" in
start)
	port=${3:?PORT missing}
	servers=${4:-1}
	if zk_alive "$dir" || zk_alive "$dir/1"; then
		echo "zookeeper.sh: already running in $dir" >&2
		exit 0
	fi
	if [ "$servers" = 1 ]; then
		zk_config "$dir" "$port"
		zk_launch "$dir"
		zk_wait "$dir"
		exit 0
	fi
	[ "$servers" = 3 ] || { echo "zookeeper.sh: SERVERS is 1 or 3" >&2; exit 2; }
	rm -rf "$dir"
	quorum=
	for i in 1 2 3; do
		p=$((port + 3 * (i - 1)))
		quorum+="server.$i=127.0.0.1:$((p + 1)):$((p + 2))"$'\n'
	done
	for i in 1 2 3; do
		zk_config "$dir/$i" $((port + 3 * (i - 1))) "$quorum"
		echo "$i" >"$dir/$i/data/myid"
	done
	for i in 1 2 3; do zk_launch "$dir/$i"; done
	zk_wait "$dir/1" "$dir/2" "$dir/3"
	;;
resume)
	zk_alive "$dir" && exit 0
	zk_launch "$dir"
	zk_wait "$dir"
	;;
stop)
	for sdir in "$dir" "$dir"/[0-9]; do
		if [ -d "$sdir" ]; then stop_pidfile "$sdir/zookeeper.pid"; fi
	done
	;;
status)
	zk_alive "$dir"
	;;
*)
	echo "$usage" >&2
	exit 2
	;;
esac
