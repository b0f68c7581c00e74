#!/usr/bin/env bash
# services.sh up | down: the real services guid talks to, on loopback, under
# $GUID_RUN_DIR/services: ZooKeeper, Redis and a KRaft Kafka broker.  `up` writes their addresses to
# $GUID_RUN_DIR/services/services.env for tests, the demo and people:
#
#   . /tmp/guid-run/services/services.env; echo "$GUID_ZOOKEEPER"
#
# With GUID_FLEET=1 (make services-up FLEET=1), `up` also starts the fleet:
# a 3-server ZooKeeper ensemble and a 3-broker KRaft Kafka cluster, on the
# ports from GUID_ZOOKEEPER_PORT+10 and GUID_KAFKA_PORT+10 on (an offset
# inside the 100-port block of each environment), run by the PostgreSQL
# user so that fault tests may kill and restart its servers.  Their
# addresses and directories go to services.env too (GUID_FLEET_*).
# `fleet-up` starts the fleet alone, beside services already up.  `down`
# stops everything that runs, the fleet included.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
dir=$GUID_RUN_DIR/services
zk_port=${GUID_ZOOKEEPER_PORT:-61181}
redis_port=${GUID_REDIS_PORT:-61379}
kafka_port=${GUID_KAFKA_PORT:-61092}
fleet_zk_port=$((zk_port + 10))
fleet_kafka_port=$((kafka_port + 10))

# fleet_up: start the fleet and add its addresses to services.env.
fleet_up() {
	fleet=$dir/fleet
	start=$(date +%s%N)
	mkdir -p "$fleet"
	[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$fleet"
	# the ensemble and the brokers start side by side
	as_pg env GUID_RUN_DIR="$GUID_RUN_DIR" "$here/zookeeper.sh" start "$fleet/zookeeper" "$fleet_zk_port" 3 &
	zk_pid=$!
	as_pg env GUID_RUN_DIR="$GUID_RUN_DIR" "$here/kafka.sh" start "$fleet/kafka" "$fleet_kafka_port" 3 ||
		{ wait "$zk_pid" || true; exit 1; }
	wait "$zk_pid"
	zks=$(for i in 0 1 2; do printf '127.0.0.1:%d,' $((fleet_zk_port + 3 * i)); done)
	kafkas=$(for i in 0 1 2; do printf '127.0.0.1:%d,' $((fleet_kafka_port + 2 * i)); done)
	cat >>"$dir/services.env" <<ENV
GUID_FLEET_ZOOKEEPER=${zks%,}
GUID_FLEET_ZOOKEEPER_DIR=$fleet/zookeeper
GUID_FLEET_KAFKA=${kafkas%,}
GUID_FLEET_KAFKA_DIR=$fleet/kafka
ENV
	echo "Fleet: ZooKeeper ensemble on ${zks%,}, Kafka brokers on ${kafkas%,}" \
		"(started in $((($(date +%s%N) - start) / 1000000)) ms)"
}

case "${1:-}" in
up)
	"$here/install-packages.sh"
	mkdir -p "$dir"
	"$here/zookeeper.sh" start "$dir/zookeeper" "$zk_port"
	"$here/redis.sh" start "$dir/redis" "$redis_port"
	"$here/kafka.sh" start "$dir/kafka" "$kafka_port"
	cat >"$dir/services.env" <<ENV
GUID_ZOOKEEPER=127.0.0.1:$zk_port
GUID_ZOOKEEPER_DIR=$dir/zookeeper
GUID_REDIS=127.0.0.1:$redis_port
GUID_KAFKA=127.0.0.1:$kafka_port
ENV
	echo "ZooKeeper on 127.0.0.1:$zk_port, Redis on 127.0.0.1:$redis_port, Kafka on 127.0.0.1:$kafka_port"
	[ "${GUID_FLEET:-0}" = 1 ] && fleet_up
	chmod a+r "$dir/services.env"
	echo "Addresses in $dir/services.env"
	;;
fleet-up)
	fleet_up
	chmod a+r "$dir/services.env"
	;;
down)
	"$here/zookeeper.sh" stop "$dir/zookeeper"
	"$here/redis.sh" stop "$dir/redis"
	"$here/kafka.sh" stop "$dir/kafka"
	if [ -d "$dir/fleet" ]; then
		"$here/kafka.sh" stop "$dir/fleet/kafka"
		"$here/zookeeper.sh" stop "$dir/fleet/zookeeper"
	fi
	rm -f "$dir/services.env"
	;;
*)
	echo "usage: services.sh up | fleet-up | down" >&2
	exit 2
	;;
esac
