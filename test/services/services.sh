#!/usr/bin/env bash
# services.sh up | down: the real services guid talks to, on loopback, under
# $GUID_RUN_DIR/services.  `up` writes their addresses to
# $GUID_RUN_DIR/services/services.env for tests, the demo and people:
#
#   . /tmp/guid-run/services/services.env; echo "$GUID_ZOOKEEPER"
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
dir=$GUID_RUN_DIR/services
zk_port=${GUID_ZOOKEEPER_PORT:-52181}

case "${1:-}" in
up)
	"$here/install-packages.sh"
	mkdir -p "$dir"
	"$here/zookeeper.sh" start "$dir/zookeeper" "$zk_port"
	cat >"$dir/services.env" <<ENV
GUID_ZOOKEEPER=127.0.0.1:$zk_port
GUID_ZOOKEEPER_DIR=$dir/zookeeper
ENV
	chmod a+r "$dir/services.env"
	echo "ZooKeeper on 127.0.0.1:$zk_port; addresses in $dir/services.env"
	;;
down)
	"$here/zookeeper.sh" stop "$dir/zookeeper"
	rm -f "$dir/services.env"
	;;
*)
	echo "usage: services.sh up | down" >&2
	exit 2
	;;
esac
