#!/usr/bin/env bash
# test.sh: run every test against real servers, with the race detector.
#
# Starts a throw-away ZooKeeper (scripts/zk.sh) and Consul agent
# (scripts/consul.sh) on loopback ports unless COORD_TEST_ZK / COORD_TEST_CONSUL
# already name servers, makes sure redis-server is installed for the models
# tests, runs `go test -race` on every package (etcd is embedded), then stops
# what it started. Extra arguments go to `go test` (e.g. -run Conformance).
set -euo pipefail
cd "$(dirname "$0")/.."

run=$(mktemp -d "${TMPDIR:-/tmp}/coord-test.XXXXXX")
cleanup() {
	scripts/zk.sh stop "$run/zk" || true
	scripts/consul.sh stop "$run/consul" || true
	rm -rf "$run"
}
trap cleanup EXIT

need_redis() {
	command -v redis-server >/dev/null && return
	echo "test.sh: installing Debian's redis-server package" >&2
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
}

started=()
if [ -z "${COORD_TEST_ZK:-}" ]; then
	COORD_TEST_ZK=$(scripts/zk.sh start "$run/zk")
	started+=(zk)
fi
if [ -z "${COORD_TEST_CONSUL:-}" ]; then
	COORD_TEST_CONSUL=$(scripts/consul.sh start "$run/consul")
	started+=(consul)
fi
need_redis
export COORD_TEST_ZK COORD_TEST_CONSUL
# What this script started must be there: its absence fails the run.
if [ -z "${COORD_TEST_REQUIRE:-}" ]; then
	COORD_TEST_REQUIRE=$(IFS=,; echo "${started[*]:-},redis")
fi
export COORD_TEST_REQUIRE
echo "test.sh: ZooKeeper $COORD_TEST_ZK, Consul $COORD_TEST_CONSUL, etcd embedded; required: $COORD_TEST_REQUIRE" >&2

go test -race -count=1 -timeout 30m "$@" ./...
