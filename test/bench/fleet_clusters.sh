#!/usr/bin/env bash
# fleet_clusters.sh (make fleet-bench): 8 PostgreSQL clusters (shared_buffers
# 16MB) leasing from the 3-node ZooKeeper ensemble and streaming into the
# 3-broker Kafka, 1,016 simulated lease holders filling the rest of their
# namespace: the memory of the 8 clusters, and how long one publisher takes
# to stream again (and to get a new row into the read_committed topic) when
# it is restarted while the 7 others stream.
#
# The figures come from test/tap/049_fleet_many_clusters.pl.  It needs the
# fleet (test/services/services.sh fleet-up): a fleet already running (make
# services-up FLEET=1) is used as it is, else this script starts one and
# stops it at the end.  It builds and installs the extension first (as make
# test does), so it measures this checkout.  This is not a test: it prints
# the figures and the run's log, and fails only when no figure came out
# (something broke).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. test/services/lib.sh

install_and_build
make -s test/fleet/guid_lease_sim
run=$GUID_RUN_DIR/fleet-bench-clusters
run_dir_make "$run"
cp -r test "$run/src"
cp test/fleet/guid_lease_sim "$run/src/"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$run/src"
as_pg mkdir -p "$run/tap"

env_file=$GUID_RUN_DIR/services/services.env
fleet_dir=$GUID_RUN_DIR/services/fleet
if [ -f "$env_file" ] && grep -q '^GUID_FLEET_KAFKA=' "$env_file" &&
	test/services/zookeeper.sh status "$fleet_dir/zookeeper/1"; then
	echo "Using the fleet already running (make services-up FLEET=1)"
else
	# ours: stopped, and its addresses taken out of services.env, on exit
	trap 'test/services/kafka.sh stop "$fleet_dir/kafka"; test/services/zookeeper.sh stop "$fleet_dir/zookeeper";
		sed -i "/^GUID_FLEET_/d" "$env_file"' EXIT
	test/services/services.sh fleet-up
fi
# shellcheck disable=SC1090
. "$env_file"

pgxs_src=$(dirname "$(dirname "$(pg_config --pgxs)")")
log=$run/049_fleet_many_clusters.log
(cd "$run/src/tap" && as_pg env \
	PERL5LIB="$pgxs_src/test/perl:$run/src/tap" \
	PG_REGRESS="$pgxs_src/test/regress/pg_regress" \
	TESTDIR="$run/tap" \
	GUID_LEASE_SIM="$run/src/guid_lease_sim" \
	GUID_FLEET_ZOOKEEPER="$GUID_FLEET_ZOOKEEPER" \
	GUID_FLEET_ZOOKEEPER_DIR="$GUID_FLEET_ZOOKEEPER_DIR" \
	GUID_FLEET_KAFKA="$GUID_FLEET_KAFKA" \
	GUID_FLEET_KAFKA_DIR="$GUID_FLEET_KAFKA_DIR" \
	prove -v 049_fleet_many_clusters.pl) >"$log" 2>&1 || true

echo "== Fleet: 8 clusters and 1,016 simulated lease holders; one publisher restarted while 7 stream =="
if ! grep -q '^# figure:' "$log"; then
	echo "no figures: see $log" >&2
	tail -20 "$log" >&2
	exit 1
fi
sed -n 's/^# figure: /  /p' "$log"
echo "  (test result: $(grep -E '^Result:' "$log" || echo unknown); log in $log)"
