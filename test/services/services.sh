#!/usr/bin/env bash
# services.sh up | down: the real services guid talks to, on loopback, under
# $GUID_RUN_DIR/services: ZooKeeper, Redis and a KRaft Kafka broker.  `up` writes their addresses to
# $GUID_RUN_DIR/services/services.env for tests, the demo and people:
#
#   . /tmp/guid-run/services/services.env; echo "$GUID_ZOOKEEPER"
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
dir=$GUID_RUN_DIR/services
zk_port=${GUID_ZOOKEEPER_PORT:-61181}
redis_port=${GUID_REDIS_PORT:-61379}
kafka_port=${GUID_KAFKA_PORT:-61092}

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
	chmod a+r "$dir/services.env"
	echo "ZooKeeper on 127.0.0.1:$zk_port, Redis on 127.0.0.1:$redis_port, Kafka on 127.0.0.1:$kafka_port; addresses in $dir/services.env"
	;;
down)
	"$here/zookeeper.sh" stop "$dir/zookeeper"
	"$here/redis.sh" stop "$dir/redis"
	"$here/kafka.sh" stop "$dir/kafka"
	rm -f "$dir/services.env"
	;;
*)
	echo "usage: services.sh up | down" >&2
	exit 2
	;;
esac
