#!/usr/bin/env bash
# install-packages.sh: install every Debian package that guid's build, tests,
# benchmarks and demo need.  Idempotent and quiet when all are present; runs
# apt-get update once before installing anything that is missing.
set -euo pipefail

packages=(
	build-essential
	postgresql-15
	postgresql-client-15
	postgresql-contrib
	postgresql-server-dev-15
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	faketime
	libzookeeper-st-dev
	zookeeper
	libhiredis-dev
	redis-server
	librdkafka-dev
	kcat
	libmicrohttpd-dev
	libjwt-dev
	wrk
	curl
	openssl
	prometheus
	prometheus-postgres-exporter
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
echo "install-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Do not let package scripts start system-wide services (redis, zookeeper,
# a PostgreSQL cluster): the project runs its own on loopback.
policy=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod +x "$policy"
	created_policy=1
fi
trap '[ -n "$created_policy" ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
