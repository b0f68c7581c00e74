# lib.sh: shell helpers shared by the test runner, the benchmark and the demo.
# Source it; it defines functions and changes nothing by itself.
#
# PostgreSQL refuses to run as root, so when we are root every server and
# client command runs as the "postgres" user (created by Debian's package),
# and the run directory is owned by it.

PG_BIN=${PG_BIN:-$(pg_config --bindir)}
GUID_RUN_DIR=${GUID_RUN_DIR:-/tmp/guid-run}

# as_pg CMD...: run CMD as the PostgreSQL user.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- env PATH="$PG_BIN:$PATH" "$@"
	else
		env PATH="$PG_BIN:$PATH" "$@"
	fi
}

# as_root CMD...: run CMD as root (sudo when we are not).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# run_dir_make DIR: an empty directory the PostgreSQL user owns.
run_dir_make() {
	rm -rf "$1"
	mkdir -p "$1"
	[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$1"
	return 0
}

# scratch_init DIR PORT [CONF_LINE...]: initdb a cluster in DIR/data that
# listens on 127.0.0.1:PORT and on a socket in DIR, with guid preloaded and
# the given postgresql.conf lines appended.
scratch_init() {
	local dir=$1 port=$2
	shift 2
	as_pg mkdir -p "$dir"
	as_pg initdb -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; return 1; }
	{
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'guid'"
		echo "max_connections = 50"
		for line in "$@"; do echo "$line"; done
	} | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

# scratch_run DIR: start the cluster initialised in DIR.
scratch_run() {
	as_pg pg_ctl -D "$1/data" -l "$1/server.log" -w start >/dev/null ||
		{ cat "$1/server.log"; return 1; }
}

# scratch_start DIR PORT [CONF_LINE...]: scratch_init, then scratch_run.
scratch_start() {
	scratch_init "$@" && scratch_run "$1"
}

# scratch_stop DIR: stop the cluster in DIR/data if it runs.
scratch_stop() {
	[ -f "$1/data/postmaster.pid" ] && as_pg pg_ctl -D "$1/data" -m fast -w stop >/dev/null 2>&1
	return 0
}

# scratch_psql DIR PORT ARGS...: psql to the scratch cluster, quiet, failing on error.
scratch_psql() {
	local dir=$1 port=$2
	shift 2
	as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"
}

# install_and_build [MAKE_ARGS...]: the packages, then build and install guid
# (a production build unless MAKE_ARGS say otherwise, e.g. GUID_FAULT_INJECTION=1).
install_and_build() {
	test/services/install-packages.sh
	make -s "$@"
	as_root make -s install "$@" >/dev/null
}

# stop_pidfile FILE: stop the process whose pid FILE holds (thawing it first
# if it was frozen): SIGTERM, up to 10 s, then SIGKILL; remove FILE.
stop_pidfile() {
	local pid
	if [ -f "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null; then
		kill -CONT "$pid" 2>/dev/null || true
		kill "$pid"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
}
