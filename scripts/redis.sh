#!/usr/bin/env bash
# redis.sh: the redis-server that the models tests start (one per test, on a
# free loopback port; see internal/testenv), from Debian's redis-server package.
#
#   scripts/redis.sh install [LOG]   install the package when redis-server is missing
#   scripts/redis.sh version         print redis-server's version
#
# The package is installed with RUNLEVEL=1, so that it starts no system
# service. COORD_REDIS_SERVER names the binary (default: redis-server on PATH);
# COORD_APT_GET another apt-get. The scripts' own tests set both to run the
# cold path.
set -euo pipefail
script=redis.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

REDIS_SERVER=${COORD_REDIS_SERVER:-redis-server}

installed() { "$REDIS_SERVER" --version >/dev/null 2>&1; }

install() {
	installed && return 0
	local logfile=${1:-$cache_root/redis-install.log}
	apt_install "$logfile" redis-server || die "install" "apt-get install redis-server failed" "$logfile"
	installed || die "install" "the redis-server package is installed but $REDIS_SERVER does not run" "$logfile"
}

version() { "$REDIS_SERVER" --version | sed -n 's/.* v=\([^ ]*\).*/Redis \1/p'; }

case "${1:-}" in
install) install "${2:-}" ;;
version) version ;;
*)
	echo "usage: $0 install [LOG] | version" >&2
	exit 2
	;;
esac
