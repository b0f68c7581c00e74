#!/usr/bin/env bash
# run-tests.sh: what `make test` does, from a fresh machine: install the
# packages, build and install the extension, run the pgTAP suite on a
# scratch cluster, the unit tests (test/unit, against the real ZooKeeper),
# then the Perl TAP suite (its own clusters), and stop
# every server it started (ZooKeeper included, test/services/).  Exits
# non-zero when anything fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. test/services/lib.sh

# A production build carries no fault-injection setting; the tests use a
# test build (make GUID_FAULT_INJECTION=1) that does.
test/services/install-packages.sh
make -s
if grep -q 'guid\.publisher_test_pause' guid.so; then
	echo "not ok - a production guid.so must not define guid.publisher_test_pause" >&2
	exit 1
fi
echo "ok - the production build defines no fault-injection setting"
install_and_build GUID_FAULT_INJECTION=1

echo "== Layout (test/layout) =="
# Dependencies point one way, files stay small, the lease protocol is plain
# C: checked on the objects just built.
prove --exec bash test/layout/check.sh

run=$GUID_RUN_DIR/test
run_dir_make "$run"
# The PostgreSQL user may not be able to read the checkout: give it a copy.
cp -r test "$run/src"
mkdir -p "$run/src-c"
cp -r extension coordinator include "$run/src-c/"
cp guid_consumer test/fleet/guid_lease_sim "$run/src/"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$run/src" "$run/src-c"

echo "== pgTAP (test/pgtap) =="
pgtap_port=${GUID_PGTAP_PORT:-61433}
trap 'scratch_stop "$run/pgtap"; "$root/test/services/services.sh" down' EXIT
scratch_start "$run/pgtap" "$pgtap_port" "guid.node_id = 1"
scratch_psql "$run/pgtap" "$pgtap_port" -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION guid'
(cd "$run/src" && as_pg pg_prove -h "$run/pgtap" -p "$pgtap_port" -U postgres -d postgres pgtap/*.sql)
scratch_stop "$run/pgtap"

"$root/test/services/services.sh" up
. "$GUID_RUN_DIR/services/services.env"

echo "== Unit tests (test/unit) =="
# The lease protocol alone, against the real ZooKeeper: no PostgreSQL.
(cd "$root" && GUID_ZOOKEEPER="$GUID_ZOOKEEPER" TMPDIR="$run" prove --exec '' test/unit/lease_test)

echo "== Perl TAP (test/tap) =="
# The fleet (a ZooKeeper ensemble and three Kafka brokers, test/services/)
# starts once, after the other tests, only when a selected test uses it
# (GuidFleet.pm); the fleet tests share it.
pgxs_src=$(dirname "$(dirname "$(pg_config --pgxs)")")
as_pg mkdir -p "$run/tap"
cd "$run/src/tap"
fleet_tests=()
other_tests=()
for t in ${GUID_TAP_TESTS:-*.pl}; do
	if grep -q '^use GuidFleet;' "$t"; then fleet_tests+=("$t"); else other_tests+=("$t"); fi
done

# tap_prove TEST...: run the Perl TAP tests as the PostgreSQL user.
tap_prove() {
	as_pg env \
		PERL5LIB="$pgxs_src/test/perl:$run/src/tap" \
		PG_REGRESS="$pgxs_src/test/regress/pg_regress" \
		TESTDIR="$run/tap" \
		GUID_ZOOKEEPER="$GUID_ZOOKEEPER" \
		GUID_ZOOKEEPER_DIR="$GUID_ZOOKEEPER_DIR" \
		GUID_REDIS="$GUID_REDIS" \
		GUID_KAFKA="$GUID_KAFKA" \
		GUID_KAFKA_LIBS="$GUID_RUN_DIR/kafka-libs" \
		GUID_CONSUMER="$run/src/guid_consumer" \
		GUID_LEASE_SIM="$run/src/guid_lease_sim" \
		GUID_RUN_DIR="$GUID_RUN_DIR" \
		GUID_FLEET_ZOOKEEPER="${GUID_FLEET_ZOOKEEPER:-}" \
		GUID_FLEET_ZOOKEEPER_DIR="${GUID_FLEET_ZOOKEEPER_DIR:-}" \
		GUID_FLEET_KAFKA="${GUID_FLEET_KAFKA:-}" \
		GUID_FLEET_KAFKA_DIR="${GUID_FLEET_KAFKA_DIR:-}" \
		prove --timer ${PROVE_FLAGS:-} "$@"
}

status=0
if [ ${#other_tests[@]} -gt 0 ]; then
	tap_prove "${other_tests[@]}" || status=1
fi
if [ ${#fleet_tests[@]} -gt 0 ]; then
	echo "== Perl TAP on the fleet =="
	"$root/test/services/services.sh" fleet-up
	. "$GUID_RUN_DIR/services/services.env"
	tap_prove "${fleet_tests[@]}" || status=1
fi
exit $status
