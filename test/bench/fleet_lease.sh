#!/usr/bin/env bash
# fleet_lease.sh (make fleet-bench): 1,024 node id lease holders on a 3-node
# ZooKeeper ensemble, at the default 30 s session timeout: time to lease with
# all of them starting at once, how soon a waiting holder takes a freed id,
# and leases fenced or lost when the ensemble's leader is killed (kill -9).
#
# The figures come from test/tap/046_fleet_lease_holders.pl, which starts its
# own ensemble (free loopback ports) and runs guid_lease_sim (test/fleet/):
# the project's own lease protocol, one ZooKeeper session and one thread per
# holder, no PostgreSQL.  This is not a test: it prints the figures and the
# run's log, and fails only when no figure came out (something broke).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. test/services/lib.sh

make -s test/fleet/guid_lease_sim
run=$GUID_RUN_DIR/fleet-bench
run_dir_make "$run"
cp -r test "$run/src"
cp test/fleet/guid_lease_sim "$run/src/"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$run/src"
as_pg mkdir -p "$run/tap"

pgxs_src=$(dirname "$(dirname "$(pg_config --pgxs)")")
log=$run/046_fleet_lease_holders.log
(cd "$run/src/tap" && as_pg env \
	PERL5LIB="$pgxs_src/test/perl:$run/src/tap" \
	PG_REGRESS="$pgxs_src/test/regress/pg_regress" \
	TESTDIR="$run/tap" \
	GUID_LEASE_SIM="$run/src/guid_lease_sim" \
	prove -v 046_fleet_lease_holders.pl) >"$log" 2>&1 || true

echo "== Fleet: 1,024 lease holders (guid_lease_sim) on a 3-node ZooKeeper ensemble =="
if ! grep -q '^# figure:' "$log"; then
	echo "no figures: see $log" >&2
	tail -20 "$log" >&2
	exit 1
fi
sed -n 's/^# figure: /  /p' "$log"
echo "  (test result: $(grep -E '^Result:' "$log" || echo unknown); log in $log)"
