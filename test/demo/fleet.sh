#!/usr/bin/env bash
# fleet.sh: what `make demo FLEET=1` shows.  Installs what is missing, builds
# and installs guid, starts the fleet on loopback (a 3-server ZooKeeper
# ensemble and a 3-broker KRaft Kafka, test/services/services.sh fleet-up)
# and three scratch clusters that lease their node ids from the ensemble and
# publish to the three brokers; shows each cluster's node id, IDs from each,
# the topic guid created (replication factor 3, min.insync.replicas 2), the
# stream read back with read_committed holding every cluster's rows, then
# kills the broker leading the data partition (kill -9) while the three
# clusters insert, and checks that the stream went on: the read_committed
# topic equals the committed audit rows of the three clusters, with no row
# twice.  Stops everything it started, also on an error or an interrupt.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. test/services/lib.sh

install_and_build

dir=$GUID_RUN_DIR/demo-fleet
names=(east west north)
base_port=${GUID_DEMO_FLEET_PORT:-61461}
ports=("$base_port" $((base_port + 1)) $((base_port + 2)))
topic=demo_fleet_assignments
loads=()

cleanup() {
	local p
	for p in "${loads[@]}"; do kill "$p" 2>/dev/null || true; done
	for n in "${names[@]}"; do scratch_stop "$dir/$n"; done
	test/services/services.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_dir_make "$dir"
test/services/services.sh down >/dev/null 2>&1 || true
mkdir -p "$GUID_RUN_DIR/services"
rm -f "$GUID_RUN_DIR/services/services.env"
test/services/services.sh fleet-up
. "$GUID_RUN_DIR/services/services.env"

# what kcat cannot tell (a topic's min.insync.replicas), through the admin API
cc -o "$dir/kafka_admin" test/tap/kafka_admin.c -lrdkafka

stream_conf=("wal_level = logical" "guid.kafka_brokers = '$GUID_FLEET_KAFKA'" "guid.kafka_topic = '$topic'")
# Debian's PostgreSQL 15 may restrict which libraries are output plugins.
if "$PG_BIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
	stream_conf+=("output_plugin_libraries = 'pgoutput, test_decoding, guid'")
fi

psql_on() {
	local i=$1
	shift
	scratch_psql "$dir/${names[$i]}" "${ports[$i]}" "$@"
}

echo
for i in 0 1 2; do
	scratch_start "$dir/${names[$i]}" "${ports[$i]}" "shared_buffers = 32MB" \
		"guid.node_id = -1" "guid.zookeeper = '$GUID_FLEET_ZOOKEEPER'" "guid.namespace = 'demo_fleet'" \
		"${stream_conf[@]}"
	echo "cluster ${names[$i]}: PostgreSQL on 127.0.0.1:${ports[$i]}, leasing its node id from the ensemble $GUID_FLEET_ZOOKEEPER, publishing to the brokers $GUID_FLEET_KAFKA"
done
for i in 0 1 2; do
	psql_on "$i" -c 'CREATE EXTENSION guid'
	ok=
	for _ in $(seq 1 600); do
		if [ "$(psql_on "$i" -Atc "SELECT mode = 'leased' AND publisher_state = 'streaming' FROM guid.status")" = t ]; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ -n "$ok" ] || {
		echo "fleet.sh: cluster ${names[$i]} did not lease and stream within 60 s:" >&2
		psql_on "$i" -c 'SELECT mode, zookeeper_state, publisher_state, publisher_error, last_error FROM guid.status' >&2
		exit 1
	}
done

echo
echo "== each cluster's node id, leased from the ensemble (namespace demo_fleet) =="
for i in 0 1 2; do
	psql_on "$i" -c "SELECT '${names[$i]}' AS cluster, mode, node_id, zookeeper_state, session_timeout_ms, lease_deadline, publisher_state FROM guid.status"
done

echo "== IDs from each cluster =="
for i in 0 1 2; do
	psql_on "$i" -e <<SQL
CREATE TABLE payments (
	id      guid PRIMARY KEY DEFAULT guid_next('payment'),
	booking text NOT NULL
);
INSERT INTO payments (booking) SELECT '${names[$i]}_' || g FROM generate_series(1, 3) g;
SELECT p.id, d.node_id, d.created_at, d.sequence, p.booking
FROM payments p, guid_decode(p.id) d ORDER BY p.id;
SQL
done

echo "== the data topic guid created on the 3 brokers =="
echo "\$ kafka_admin $GUID_FLEET_KAFKA describe $topic"
"$dir/kafka_admin" "$GUID_FLEET_KAFKA" describe "$topic"
echo "\$ kcat -L -b $GUID_FLEET_KAFKA -t $topic"
kcat -L -b "$GUID_FLEET_KAFKA" -t "$topic" -m 5 | sed -n '/^ *topic /,$p'

# kafka_guids: the guid of each message in the topic, read with read_committed.
kafka_guids() {
	kcat -C -b "$GUID_FLEET_KAFKA" -t "$topic" -X isolation.level=read_committed -o beginning -e -q \
		-f '%s\n' 2>/dev/null | sed -n 's/.*"guid":"\([0-9]*\)".*/\1/p'
}
# audit_count: the committed audit rows of the three clusters.
audit_count() {
	local i n=0
	for i in 0 1 2; do n=$((n + $(psql_on "$i" -Atc 'SELECT count(*) FROM guid.audit'))); done
	echo "$n"
}
# wait_caught_up SECONDS: until every publisher streams with nothing waiting
# and the topic holds as many guids as the clusters committed.
wait_caught_up() {
	local want i all
	want=$(audit_count)
	for _ in $(seq 1 $(($1 * 5))); do
		all=1
		for i in 0 1 2; do
			[ "$(psql_on "$i" -Atc "SELECT publisher_state = 'streaming' AND publish_lag_seconds = 0 FROM guid.status")" = t ] ||
				all=
		done
		[ -n "$all" ] && [ "$(kafka_guids | sort -u | wc -l)" -ge "$want" ] && return 0
		sleep 0.2
	done
	echo "fleet.sh: the stream did not catch up within $1 s" >&2
	return 1
}

echo
echo "== the stream read back with isolation.level=read_committed: every cluster's rows =="
wait_caught_up 60
echo "\$ kcat -C -b $GUID_FLEET_KAFKA -t $topic -X isolation.level=read_committed -o beginning -e -f 'key=%k %s\\n'"
kcat -C -b "$GUID_FLEET_KAFKA" -t "$topic" -X isolation.level=read_committed -o beginning -e -q \
	-f 'key=%k %s\n'
echo "-- the reference consumer (read_committed) applies it into north's database ledger:"
psql_on 2 -c 'CREATE DATABASE ledger'
consume() {
	"$root/guid_consumer" --brokers "$GUID_FLEET_KAFKA" --topic "$topic" \
		--conninfo "host=$dir/north port=${ports[2]} user=postgres dbname=ledger" --idle-exit 3
}
consume
psql_on 2 -d ledger -e -c 'SELECT node_id, count(*) AS rows, min(guid), max(guid) FROM guid_applied GROUP BY node_id ORDER BY node_id'

echo "== one fault: kill -9 of the broker leading the data partition while the three clusters insert =="
for i in 0 1 2; do
	psql_on "$i" -c 'CREATE TABLE load_ctl (stop bool NOT NULL); INSERT INTO load_ctl VALUES (false)'
	# committed and rolled-back transactions, until told to stop
	psql_on "$i" -c "
	DO \$\$
	DECLARE i int := 0;
	BEGIN
		WHILE NOT (SELECT stop FROM load_ctl) LOOP
			i := i + 1;
			PERFORM guid_next('load') FROM generate_series(1, 1 + i % 4);
			IF i % 5 = 0 THEN ROLLBACK; ELSE COMMIT; END IF;
			PERFORM pg_sleep(0.005);
		END LOOP;
	END \$\$" &
	loads+=($!)
done
published() {
	psql_on "$1" -Atc 'SELECT rows_published FROM guid.status'
}
# wait_published_more N SECONDS: until every cluster has published N rows
# more than it had when called.
wait_published_more() {
	local i from=() all
	for i in 0 1 2; do from+=("$(published "$i")"); done
	for _ in $(seq 1 $(($2 * 10))); do
		all=1
		for i in 0 1 2; do [ "$(published "$i")" -ge $((from[i] + $1)) ] || all=; done
		[ -n "$all" ] && return 0
		sleep 0.1
	done
	echo "fleet.sh: the clusters did not publish $1 more rows within $2 s:" >&2
	for i in 0 1 2; do psql_on "$i" -Atc 'SELECT publisher_state, rows_published, publisher_error FROM guid.status' >&2; done
	return 1
}
leader_of() {
	kcat -L -b "$GUID_FLEET_KAFKA" -t "$topic" -m 5 2>/dev/null |
		sed -n 's/^ *partition 0, leader \([0-9]*\),.*/\1/p' | head -1
}
wait_published_more 100 60
echo "-- the three clusters stream (rows_published: $(published 0), $(published 1), $(published 2))"
leader=$(leader_of)
[ -n "$leader" ] && [ "$leader" -gt 0 ] || { echo "fleet.sh: no leader for partition 0 of $topic" >&2; exit 1; }
pid=$(cat "$GUID_FLEET_KAFKA_DIR/$leader/kafka.pid")
echo "\$ kill -9 $pid   # broker $leader, leader of partition 0 of $topic"
kill -9 "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
new=
for _ in $(seq 1 600); do
	new=$(leader_of)
	[ -n "$new" ] && [ "$new" -gt 0 ] && [ "$new" != "$leader" ] && break
	sleep 0.1
done
[ -n "$new" ] && [ "$new" != "$leader" ] || { echo "fleet.sh: no other broker took partition 0" >&2; exit 1; }
echo "-- broker $new leads partition 0 now:"
kcat -L -b "$GUID_FLEET_KAFKA" -t "$topic" -m 5 | sed -n '/^ *topic /,$p'
wait_published_more 300 120
echo "-- the stream goes on through the two brokers left (rows_published: $(published 0), $(published 1), $(published 2))"
for i in 0 1 2; do
	psql_on "$i" -c "SELECT '${names[$i]}' AS cluster, node_id, publisher_state, rows_published, transactions_published, publish_lag_seconds FROM guid.status"
done
echo "\$ kafka.sh resume $GUID_FLEET_KAFKA_DIR/$leader"
as_pg env GUID_RUN_DIR="$GUID_RUN_DIR" test/services/kafka.sh resume "$GUID_FLEET_KAFKA_DIR/$leader"
wait_published_more 100 120
for i in 0 1 2; do psql_on "$i" -c 'UPDATE load_ctl SET stop = true'; done
for p in "${loads[@]}"; do wait "$p"; done
loads=()

echo
echo "== after the kill: the read_committed topic against the committed audit rows of the three clusters =="
wait_caught_up 240
for i in 0 1 2; do psql_on "$i" -Atc 'SELECT guid FROM guid.audit'; done | sort >"$dir/audit.txt"
kafka_guids | sort >"$dir/topic.txt"
rows=$(wc -l <"$dir/topic.txt")
dups=$(uniq -d "$dir/topic.txt" | wc -l)
missing=$(comm -23 "$dir/audit.txt" <(sort -u "$dir/topic.txt") | wc -l)
extra=$(comm -13 "$dir/audit.txt" <(sort -u "$dir/topic.txt") | wc -l)
for i in 0 1 2; do
	psql_on "$i" -c "SELECT '${names[$i]}' AS cluster, s.node_id, count(*) AS committed_audit_rows FROM guid.status s, guid.audit GROUP BY 1, 2"
done
echo "rows in the topic (read_committed): $rows; committed audit rows of the three clusters: $(wc -l <"$dir/audit.txt")"
echo "guids twice in the topic: $dups; committed rows missing from it: $missing; rows in it no cluster committed: $extra"
echo "-- the reference consumer resumes from its position and applies the rest:"
consume
psql_on 2 -d ledger -e -c 'SELECT node_id, count(*) AS rows FROM guid_applied GROUP BY node_id ORDER BY node_id'
applied=$(psql_on 2 -d ledger -Atc 'SELECT count(*) FROM guid_applied')
echo "applied by the consumer: $applied"
if [ "$dups" -ne 0 ] || [ "$missing" -ne 0 ] || [ "$extra" -ne 0 ] || [ "$rows" -ne "$(wc -l <"$dir/audit.txt")" ] ||
	[ "$applied" -ne "$rows" ]; then
	echo "fleet.sh: the stream does not equal the committed audit rows" >&2
	exit 1
fi
echo "(every committed row of every cluster, once; the rolled-back ones are not there)"
