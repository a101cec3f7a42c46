#!/usr/bin/env bash
# mutate.sh [ARGS]: mutation testing against real servers. Starts a
# throw-away ZooKeeper and Consul agent (as test.sh does), then runs
# `go run ./internal/mutate ARGS`: each mutant of internal/mutate/mutants.txt
# applied alone, the tests of its package run, the score per backend and the
# survivors printed. `-run zk-` limits it to some mutants; `-check` only
# checks that every mutant still applies and compiles (make test does that).
set -euo pipefail
script=mutate.sh
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
run=$(mktemp -d "${TMPDIR:-/tmp}/coord-mutate.XXXXXX")
cleanup() {
	scripts/zk.sh stop "$run/zk" || true
	scripts/consul.sh stop "$run/consul" || true
	rm -rf "$run"
}
trap cleanup EXIT
COORD_TEST_ZK=$(scripts/zk.sh start "$run/zk") || die "start ZooKeeper" "scripts/zk.sh start exited $?" "$run/zk/stdout.log"
COORD_TEST_CONSUL=$(scripts/consul.sh start "$run/consul") || die "start Consul" "scripts/consul.sh start exited $?" "$run/consul/consul.log"
export COORD_TEST_ZK COORD_TEST_CONSUL COORD_TEST_REQUIRE=zk,consul
go run ./internal/mutate "$@"
