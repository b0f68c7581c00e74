#!/usr/bin/env bash
# demo.sh: what `make demo` shows.  Installs what is missing, builds and
# installs guid, starts a real ZooKeeper, Redis and two scratch clusters on
# loopback that lease their node ids from ZooKeeper, issues and decodes IDs
# on both, shows idempotency keys, the audit stream in Kafka (read with kcat
# and applied by the reference consumer) and guid.status, the HTTP API
# (guid_gateway in front of west: a token minted here, a snowflake ID and a
# UUID and their status, an idempotent retry, a burst hitting 429,
# /metrics), then a failover (east gets a streaming standby, which is
# promoted once east stops), and stops everything again.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. test/services/lib.sh

install_and_build

dir=$GUID_RUN_DIR/demo
run_dir_make "$dir"
trap 'stop_pidfile "$dir/gateway/gateway.pid"; scratch_stop "$dir/east"; scratch_stop "$dir/west"; scratch_stop "$dir/east-standby"; test/services/services.sh down >/dev/null' EXIT
test/services/services.sh up
. "$GUID_RUN_DIR/services/services.env"

ports=(61451 61452)
names=(east west)
topic=demo_assignments
stream_conf=("wal_level = logical" "guid.kafka_brokers = '$GUID_KAFKA'" "guid.kafka_topic = '$topic'")
# Debian's PostgreSQL 15 may restrict which libraries are output plugins.
if "$PG_BIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null; then
	stream_conf+=("output_plugin_libraries = 'pgoutput, test_decoding, guid'")
fi
for i in 0 1; do
	scratch_start "$dir/${names[$i]}" "${ports[$i]}" \
		"guid.node_id = -1" "guid.zookeeper = '$GUID_ZOOKEEPER'" "guid.namespace = 'demo'" \
		"guid.redis = '$GUID_REDIS'" "${stream_conf[@]}"
	echo "cluster ${names[$i]}: PostgreSQL on 127.0.0.1:${ports[$i]}, leasing its node id from ZooKeeper at $GUID_ZOOKEEPER, publishing to Kafka at $GUID_KAFKA"
done
for i in 0 1; do
	scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -c 'CREATE EXTENSION guid'
	# the lease and the publisher's slot take a moment after start
	for _ in $(seq 1 300); do
		[ "$(scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -Atc "SELECT mode = 'leased' AND publisher_state = 'streaming' FROM guid.status")" = t ] && break
		sleep 0.1
	done
done

for i in 0 1; do
	echo
	echo "== cluster ${names[$i]} =="
	scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -e <<SQL
-- guid_next('payment') also writes the ID to guid.audit, in this transaction:
-- it reaches Kafka if and only if the transaction commits.
CREATE TABLE payments (
	id      guid PRIMARY KEY DEFAULT guid_next('payment'),
	booking text NOT NULL,
	amount  numeric NOT NULL
);

INSERT INTO payments (booking, amount)
SELECT 'book_' || (1000 + g), 10 * g FROM generate_series(1, 3) g;

BEGIN;
INSERT INTO payments (booking, amount) VALUES ('book_rolled_back', 1);
ROLLBACK;

SELECT p.id, d.created_at, d.node_id, d.sequence, p.booking
FROM payments p, guid_decode(p.id) d
ORDER BY p.id;

SELECT mode, node_id, zookeeper_state, lease_deadline, reserved_until,
       publisher_state, rows_published, last_published_lsn, slot_lag_bytes
FROM guid.status;
SQL
done

echo
echo "== idempotency keys: the same key gets the same ID on both clusters (Redis at $GUID_REDIS) =="
for i in 0 1; do
	scratch_psql "$dir/${names[$i]}" "${ports[$i]}" -e -c \
		"SELECT '${names[$i]}' AS cluster, guid_next('payment', 'book_1001') AS same_key, guid_next('payment', 'book_1002') AS other_key"
done

echo
echo "== the audit stream: topic $topic, read with isolation.level=read_committed (kcat) =="
for _ in $(seq 1 300); do
	n=$(kcat -C -b "$GUID_KAFKA" -t "$topic" -X isolation.level=read_committed -o beginning -e -q -f '%k\n' 2>/dev/null | wc -l)
	[ "$n" -ge 8 ] && break
	sleep 0.1
done
echo "\$ kcat -C -b $GUID_KAFKA -t $topic -X isolation.level=read_committed -o beginning -e -f 'key=%k %h %s\\n'"
kcat -C -b "$GUID_KAFKA" -t "$topic" -X isolation.level=read_committed -o beginning -e -q \
	-f 'key=%k %h %s\n'
echo "(6 payments and 2 idempotent IDs, each once, recorded by the cluster that issued them; the rolled-back payments are not there)"

echo
echo "== the reference consumer applies the stream into west's database, exactly once =="
scratch_psql "$dir/west" "${ports[1]}" -c 'CREATE DATABASE ledger'
"$root/guid_consumer" --brokers "$GUID_KAFKA" --topic "$topic" \
	--conninfo "host=$dir/west port=${ports[1]} user=postgres dbname=ledger" --idle-exit 2
scratch_psql "$dir/west" "${ports[1]}" -d ledger -e -c \
	'SELECT guid, node_id, created_at, service, lsn, xid FROM guid_applied ORDER BY guid' \
	-c 'SELECT * FROM guid_consumer_offsets'
echo "(run it again: it resumes from its position, stored in the same transactions as the rows)"
"$root/guid_consumer" --brokers "$GUID_KAFKA" --topic "$topic" \
	--conninfo "host=$dir/west port=${ports[1]} user=postgres dbname=ledger" --idle-exit 2

echo
echo "== a million IDs on east =="
scratch_psql "$dir/east" "${ports[0]}" -e <<'SQL'
-- A million in one statement: unique and increasing.
SELECT count(*) AS ids, count(DISTINCT id) AS distinct_ids, min(id) < max(id) AS increasing
FROM (SELECT guid_next() AS id FROM generate_series(1, 1000000)) s;

-- Time-range queries use the primary key.
EXPLAIN (COSTS OFF) SELECT * FROM payments WHERE id >= now() - interval '1 hour';

-- JSON carries IDs as strings; UUIDv7 from the same generator.
SELECT to_json(guid_next()) AS json_id, guid_uuid() AS uuid_v7;

\x on
SELECT * FROM guid.status;
SQL

echo
echo "== the HTTP API: guid_gateway in front of west =="
gw=$dir/gateway
gw_port=61454
gw_url=http://127.0.0.1:$gw_port
as_pg mkdir -p "$gw"
# The gateway's role needs no more than pg_monitor (for /healthz and
# /metrics): guid_next(service) writes guid.audit itself.
scratch_psql "$dir/west" "${ports[1]}" -c 'CREATE ROLE guid_gateway LOGIN IN ROLE pg_monitor'
head -c 32 /dev/urandom | base64 | as_pg tee "$gw/hs256.secret" >/dev/null
as_pg chmod 0600 "$gw/hs256.secret"
as_pg tee "$gw/gateway.conf" >/dev/null <<CONF
listen_address = 127.0.0.1
port = $gw_port
conninfo = host=$dir/west port=${ports[1]} dbname=postgres user=guid_gateway
pool_size = 2
threads = 2
jwt_hs256_secret_file = $gw/hs256.secret
jwt_issuer = guid-demo
# the client "burst-demo" may take 5 IDs at once, then 1 a second
limit.burst-demo = 1 5
CONF
echo "\$ cat $gw/gateway.conf"
cat "$gw/gateway.conf"
as_pg sh -c 'guid_gateway --config "$1" >"$2" 2>&1 & echo $! >"$3"' sh \
	"$gw/gateway.conf" "$gw/gateway.log" "$gw/gateway.pid"
for _ in $(seq 1 300); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$gw_url/healthz")" = 200 ] && break
	sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$gw_url/healthz")" = 200 ] ||
	{ echo "guid_gateway did not become ready:"; cat "$gw/gateway.log"; exit 1; }
echo "\$ curl -s $gw_url/healthz"
curl -s "$gw_url/healthz"
echo

# jwt SUB: an HS256 token for the client SUB, valid for 10 minutes, signed
# with the gateway's secret (any JWT library does the same).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt() {
	local h p
	h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '{"sub":"%s","iss":"guid-demo","exp":%d}' "$1" $(($(date +%s) + 600)) | b64url)
	printf '%s.%s.%s' "$h" "$p" \
		"$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -mac HMAC -macopt "key:$(as_pg cat "$gw/hs256.secret")" -binary | b64url)"
}
TOKEN=$(jwt payments-service)
echo "TOKEN=$TOKEN   # HS256, sub=payments-service, minted with openssl"
gw_call() { # METHOD PATH [CURL_ARGS...]: show the call, then make it
	local method=$1 path=$2
	shift 2
	local shown="" a
	for a in "$@"; do
		case "$a" in *' '*) shown+="'$a' " ;; *) shown+="$a " ;; esac
	done
	echo "\$ curl -s -X $method -H \"Authorization: Bearer \$TOKEN\" $shown'$gw_url$path'"
	curl -s -X "$method" -H "Authorization: Bearer $TOKEN" "$@" "$gw_url$path"
	echo
}
gw_call POST '/guid/generate?type=snowflake&service=payment' | tee "$gw/snowflake.json"
snowflake=$(sed -n 's/^{"guid":"\([0-9]*\)".*/\1/p' "$gw/snowflake.json")
gw_call POST '/guid/generate?type=uuid' | tee "$gw/uuid.json"
uuid=$(sed -n 's/^{"guid":"\([0-9a-f-]*\)".*/\1/p' "$gw/uuid.json")
gw_call GET "/guid/status/$snowflake"
gw_call GET "/guid/status/$uuid"
echo "-- an idempotent retry: the same Idempotency-Key gets the same ID (Redis), recorded once in guid.audit"
gw_call POST '/guid/generate?service=payment' -H 'Idempotency-Key: order-42'
gw_call POST '/guid/generate?service=payment' -H 'Idempotency-Key: order-42'
scratch_psql "$dir/east" "${ports[0]}" -e -c "SELECT guid_next('payment', 'order-42') AS same_key_in_sql_on_east"
echo "-- a burst: client burst-demo (limit.burst-demo = 1 5) asks for one ID 8 times at once"
TOKEN=$(jwt burst-demo)
echo "\$ for i in \$(seq 1 8); do curl -s -o /dev/null -w '%{http_code} ' -X POST -H \"Authorization: Bearer \$TOKEN\" '$gw_url/guid/generate'; done"
for _ in $(seq 1 8); do
	curl -s -o /dev/null -w '%{http_code} ' -X POST -H "Authorization: Bearer $TOKEN" "$gw_url/guid/generate"
done
echo
echo "\$ curl -s -i -X POST -H \"Authorization: Bearer \$TOKEN\" '$gw_url/guid/generate'"
curl -s -i -X POST -H "Authorization: Bearer $TOKEN" "$gw_url/guid/generate" | grep -iv '^date:' | tr -d '\r'
echo
echo "\$ curl -s $gw_url/metrics | grep ...   (a few lines of it)"
curl -s "$gw_url/metrics" | grep -E '^guid_gateway_requests_total\{endpoint="generate"|^guid_gateway_ids_total|^guid_gateway_rate_limited_total|^guid_gateway_auth_failures_total|^guid_mode\{mode="leased"\}|^guid_ids_issued_total|^guid_rows_published_total'
echo "\$ kill -TERM \$(cat $gw/gateway.pid)   # drains the requests in flight, then exits"
stop_pidfile "$gw/gateway.pid"
cat "$gw/gateway.log"

echo
echo "== failover: east gets a streaming standby; east stops; the standby is promoted =="
sdir=$dir/east-standby
sport=61453
as_pg mkdir -p "$sdir"
echo "\$ pg_basebackup -h $dir/east -p ${ports[0]} -D $sdir/data -R -X stream"
as_pg pg_basebackup -h "$dir/east" -p "${ports[0]}" -U postgres -D "$sdir/data" -R -X stream -c fast
printf "port = %s\nunix_socket_directories = '%s'\n" "$sport" "$sdir" | as_pg tee -a "$sdir/data/postgresql.conf" >/dev/null
scratch_run "$sdir"
kafka_count() {
	kcat -C -b "$GUID_KAFKA" -t "$topic" -X isolation.level=read_committed -o beginning -e -q -f '%k\n' 2>/dev/null | wc -l
}
n0=$(kafka_count)
wait_replayed() {
	local lsn
	lsn=$(scratch_psql "$dir/east" "${ports[0]}" -Atc 'SELECT pg_current_wal_flush_lsn()')
	for _ in $(seq 1 300); do
		[ "$(scratch_psql "$sdir" "$sport" -Atc "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && return 0
		sleep 0.1
	done
}
scratch_psql "$dir/east" "${ports[0]}" -e -c "INSERT INTO payments (booking, amount) VALUES ('book_before_failover', 42)"
wait_replayed
echo "-- on the standby (127.0.0.1:$sport), a hot standby: it replays east's WAL and issues nothing"
as_pg psql -X -h "$sdir" -p "$sport" -U postgres -d postgres -e \
	-c "SELECT count(*) AS replicated_payments, max(id) AS max_id FROM payments" \
	-c 'SELECT mode, node_id, reserved_until FROM guid.status' \
	-c 'SELECT guid_next()' 2>&1 || true
echo "\$ pg_ctl stop east; pg_ctl promote east-standby"
scratch_stop "$dir/east"
as_pg pg_ctl -D "$sdir/data" -w promote >/dev/null
for _ in $(seq 1 600); do
	[ "$(scratch_psql "$sdir" "$sport" -Atc "SELECT mode = 'leased' AND publisher_state = 'streaming' FROM guid.status")" = t ] && break
	sleep 0.1
done
scratch_psql "$sdir" "$sport" -e <<'SQL'
-- The promoted standby leases a node id (here the one east freed when it
-- stopped) and starts above every ID it replayed: nothing east issued can
-- come again.
INSERT INTO payments (booking, amount) VALUES ('book_after_failover', 43);
SELECT p.id, d.node_id, d.created_at, p.booking
FROM payments p, guid_decode(p.id) d
WHERE p.booking LIKE 'book\_%failover' ORDER BY p.id;
SELECT (SELECT min(id) FROM payments WHERE booking = 'book_after_failover') >
       (SELECT max(id) FROM payments WHERE booking <> 'book_after_failover') AS new_ids_above_every_replicated_id;
SELECT mode, node_id, zookeeper_state, publisher_state, rows_published FROM guid.status;
SQL
for _ in $(seq 1 300); do
	[ "$(kafka_count)" -ge $((n0 + 2)) ] && break
	sleep 0.1
done
echo "-- the stream after the failover: the payment made before it (east's node id) and the one made after it"
kcat -C -b "$GUID_KAFKA" -t "$topic" -X isolation.level=read_committed -o beginning -e -q \
	-f 'key=%k %s\n' | tail -n 2
