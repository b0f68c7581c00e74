# gateway.sh: the 'gateway' section of bench.sh (sourced by it, using its
# helpers and its scratch cluster $DIR:$PORT): guid_gateway in front of the
# scratch cluster, loaded by wrk on 64 keep-alive connections, in one table:
#   GET /healthz                       the HTTP floor (answered from the
#                                      gateway's cached health, no query)
#   POST /guid/generate, auth = off    snowflake, one ID per request
#   POST /guid/generate, JWT HS256     the same with a token checked per request
#   POST /guid/generate?service=bench  with a fresh Idempotency-Key per request
#                                      (guid_next(service, key), Redis)
#   pgbench SELECT guid_next()         the same 64 clients straight to PostgreSQL
# Requests/s, p50 and p99 (wrk --latency), median of GW_REPEATS runs of
# GW_SECONDS each, ratios to /healthz.  Two gateways (auth off, auth on) with
# the default pool_size and threads and a rate limit high enough never to
# refuse.  Needs the bench's Redis (started here when the idem section did
# not run).

GW_SECONDS=${GW_SECONDS:-10}
GW_REPEATS=${GW_REPEATS:-3}
GW_CONNS=64
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	GW_SECONDS=3
	GW_REPEATS=1
fi
GDIR=$GUID_RUN_DIR/bench-gateway
rm -rf "$GDIR"
mkdir -p "$GDIR"

# Redis for the idempotent form: the idem section's, or the same one started here
if ! section idem; then
	RDIR=$GUID_RUN_DIR/bench-redis
	RPORT=${GUID_REDIS_PORT:-56380}
	"$ROOT/test/services/redis.sh" stop "$RDIR"
	"$ROOT/test/services/redis.sh" start "$RDIR" "$RPORT"
	at_exit '"$ROOT/test/services/redis.sh" stop "$RDIR"'
	q "ALTER SYSTEM SET guid.redis = '127.0.0.1:$RPORT'" >/dev/null
fi
# 64 pgbench clients and two pools of 4 need more than the scratch cluster's 50
q "ALTER SYSTEM SET max_connections = 100" >/dev/null
as_pg pg_ctl -D "$DIR/data" -l "$DIR/server.log" -m fast -w restart >/dev/null

# an HS256 token (sub = bench) signed with a secret of our own
GW_SECRET=$GDIR/hs256.secret
printf 'bench-secret-%s\n' "$RANDOM$RANDOM" >"$GW_SECRET"
chmod 600 "$GW_SECRET"
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
gw_in="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url).$(printf '{"sub":"bench","exp":%d}' $(($(date +%s) + 86400)) | b64url)"
GW_TOKEN="$gw_in.$(printf '%s' "$gw_in" | openssl dgst -sha256 -hmac "$(head -1 "$GW_SECRET")" -binary | b64url)"

# gw_start NAME AUTH: a gateway on a free port; prints the port
gw_start() {
	local name=$1 auth=$2 port
	port=$(free_port)
	cat >"$GDIR/$name.conf" <<EOF
listen_address = 127.0.0.1
port = $port
conninfo = host=$DIR port=$PORT user=postgres dbname=postgres
auth = $auth
jwt_hs256_secret_file = $GW_SECRET
rate_limit = 1000000000
rate_burst = 1000000000
EOF
	"$PG_BIN/guid_gateway" --config "$GDIR/$name.conf" >"$GDIR/$name.log" 2>&1 &
	echo $! >"$GDIR/$name.pid"
	for _ in $(seq 1 200); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] &&
			{ echo "$port"; return 0; }
		sleep 0.05
	done
	echo "bench: guid_gateway $name did not become ready:" >&2
	cat "$GDIR/$name.log" >&2
	return 1
}
gw_stop() {
	stop_pidfile "$GDIR/off.pid"
	stop_pidfile "$GDIR/jwt.pid"
}
at_exit gw_stop
GW_OFF=$(gw_start off off)
GW_JWT=$(gw_start jwt on)

cat >"$GDIR/generate.lua" <<'EOF'
wrk.method = "POST"
local token = os.getenv("GW_TOKEN")
if token and token ~= "" then
	wrk.headers["Authorization"] = "Bearer " .. token
end
EOF
# a unique key per request: run prefix, thread number, counter
cat >"$GDIR/idem.lua" <<'EOF'
local threads = 0
function setup(thread)
	threads = threads + 1
	thread:set("tid", threads)
end
local n = 0
local prefix = os.getenv("GW_KEY_PREFIX")
function request()
	n = n + 1
	return wrk.format("POST", "/guid/generate?service=bench",
		{ ["Idempotency-Key"] = prefix .. "-" .. tid .. "-" .. n })
end
EOF

# wrk_run URL SCRIPT: one run; prints "rps p50_ms p99_ms errors"
wrk_run() {
	local out
	out=$(wrk -t 2 -c "$GW_CONNS" -d "${GW_SECONDS}s" --latency ${2:+-s "$2"} "$1") ||
		{ echo "bench: wrk failed: $out" >&2; return 1; }
	awk '
		function ms(v) {
			if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
			if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
			if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
			return v
		}
		/^ +50% / { p50 = ms($2) }
		/^ +99% / { p99 = ms($2) }
		/^Requests\/sec:/ { rps = $2 }
		/Non-2xx or 3xx responses:/ { err += $NF }
		/Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) err += $i + 0 }
		END { printf "%s %s %s %d\n", rps, p50, p99, err }' <<<"$out"
}

GW_NAMES=("GET /healthz (HTTP floor)" "generate, auth = off" "generate, JWT HS256"
	"generate service + Idempotency-Key" "pgbench SELECT guid_next()")
declare -A gw_rps=() gw_p50=() gw_p99=() gw_err=()
echo "SELECT guid_next();" | as_pg tee "$DIR/pgbench-gw.sql" >/dev/null
gw_load0=$(cut -d' ' -f1-3 /proc/loadavg)
for ((rep = 0; rep < GW_REPEATS; rep++)); do
	for i in 0 1 2 3 4; do
		wait_clock
		case $i in
			0) r=$(GW_TOKEN='' wrk_run "http://127.0.0.1:$GW_OFF/healthz") ;;
			1) r=$(GW_TOKEN='' wrk_run "http://127.0.0.1:$GW_OFF/guid/generate" "$GDIR/generate.lua") ;;
			2) r=$(GW_TOKEN=$GW_TOKEN wrk_run "http://127.0.0.1:$GW_JWT/guid/generate" "$GDIR/generate.lua") ;;
			3) r=$(GW_KEY_PREFIX="k$rep-$$-$(date +%s)" wrk_run "http://127.0.0.1:$GW_OFF/guid/generate" "$GDIR/idem.lua") ;;
			4)
				out=$(as_pg pgbench -n -c "$GW_CONNS" -j 2 -T "$GW_SECONDS" -h "$DIR" -p "$PORT" -U postgres \
					-f "$DIR/pgbench-gw.sql" postgres 2>"$DIR/pgbench.err") ||
					{ cat "$DIR/pgbench.err" >&2; exit 1; }
				r="$(awk '/^tps = / { t = $3 } /^latency average = / { l = $4 } END { print t, l, "-", 0 }' <<<"$out")"
				;;
		esac
		read -r a b c d <<<"$r"
		gw_rps[$i]+=" $a"
		gw_p50[$i]+=" $b"
		gw_p99[$i]+=" $c"
		gw_err[$i]=$((${gw_err[$i]:-0} + d))
	done
done
gw_load1=$(cut -d' ' -f1-3 /proc/loadavg)
for i in 0 1 2 3 4; do
	# shellcheck disable=SC2086
	gw_rps[$i]=$(median ${gw_rps[$i]})
	# shellcheck disable=SC2086
	gw_p50[$i]=$(median ${gw_p50[$i]})
	# shellcheck disable=SC2086
	[ $i -lt 4 ] && gw_p99[$i]=$(median ${gw_p99[$i]})
done
gw_p99[4]=-
gw_floor=${gw_rps[0]}

echo "HTTP gateway: wrk -t 2 -c $GW_CONNS -d ${GW_SECONDS}s --latency, keep-alive, one ID per request (median of $GW_REPEATS)"
echo "load average (1, 5, 15 min) before: $gw_load0; after: $gw_load1; pool_size 4, threads 4"
printf '%-40s %12s %10s %10s %10s %8s\n' "request" "req/s" "p50 ms" "p99 ms" "vs healthz" "errors"
rule 95
for i in 0 1 2 3 4; do
	printf '%-40s %12s %10s %10s %10s %8s\n' "${GW_NAMES[$i]}" "$(fmt '%.0f' "${gw_rps[$i]}")" \
		"$(fmt '%.2f' "${gw_p50[$i]}")" "${gw_p99[$i]}" "$(ratio "${gw_rps[$i]}" "$gw_floor")" "${gw_err[$i]}"
done
echo "(pgbench: $GW_CONNS clients -j 2 -T $GW_SECONDS, tps and its average latency in the p50 column; errors: non-2xx answers and socket errors)"
echo "(gateway: $(curl -s "http://127.0.0.1:$GW_OFF/metrics" | awk '/^guid_gateway_queries_total / { q = $2 } /^guid_gateway_query_jobs_total / { j = $2 } END { printf "%d queries answered %d requests on the auth = off gateway", q, j }'))"
echo
