#!/usr/bin/env bash
# redis.sh start DIR PORT [redis-server options...] | stop DIR
#
# A redis-server (Debian's package) on 127.0.0.1:PORT and DIR/redis.sock,
# with its pid file and log under DIR, no persistence (tests need none).  Never touches a
# system-wide instance.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cmd=${1:?usage: redis.sh start DIR PORT | stop DIR}
dir=${2:?DIR missing}

redis_alive() {
	[ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null
}

case "$cmd" in
start)
	port=${3:?PORT missing}
	shift 3
	if redis_alive; then
		echo "redis.sh: already running in $dir" >&2
		exit 0
	fi
	mkdir -p "$dir"
	redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
		--unixsocket "$dir/redis.sock" --unixsocketperm 777 \
		--dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
		--daemonize yes "$@" >/dev/null
	for _ in $(seq 1 100); do
		if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
			exit 0
		fi
		sleep 0.1
	done
	echo "redis.sh: Redis did not answer on 127.0.0.1:$port; see $dir/redis.log" >&2
	exit 1
	;;
stop)
	stop_pidfile "$dir/redis.pid"
	;;
*)
	echo "usage: redis.sh start DIR PORT | stop DIR" >&2
	exit 2
	;;
esac
