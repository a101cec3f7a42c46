#!/usr/bin/env bash
# test.sh: run every test against real servers, with the race detector.
#
# In order, each a named step that on failure prints one line naming the step
# and its log, and stops what the run had started:
#   1. check-tree: no build output is tracked by git;
#   2. install what is missing: Debian's zookeeper and redis-server packages,
#      Consul built once into the cache (scripts/consul.sh);
#   3. the scripts' own tests (scripts/selftest.sh): the cold install and start
#      paths, with an empty cache and stand-in install steps;
#   4. start a throw-away ZooKeeper and Consul agent on loopback ports, unless
#      COORD_TEST_ZK / COORD_TEST_CONSUL already name servers;
#   5. `go test -race` on every package (etcd is embedded), then a summary:
#      the last lines each failed test printed, the servers and their
#      versions, tests passed / skipped / failed per package, and the wall
#      time.
# Extra arguments go to `go test` (e.g. -run Conformance). COORD_SELFTEST=0
# leaves out step 3 and COORD_ALLOW_NO_TESTS=1 passes a run of no test (make
# bench sets both). Everything the run writes is in one temporary directory
# (go test's JSON stream in go-test.json), removed at the end (kept when the
# run fails), and the cache.
set -euo pipefail
script=test.sh
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

started_at=$(date +%s)
run=$(mktemp -d "${TMPDIR:-/tmp}/coord-test.XXXXXX")
# cleanup stops the servers; it keeps the run's logs when the run failed.
cleanup() {
	local code=$?
	scripts/zk.sh stop "$run/zk" || true
	scripts/consul.sh stop "$run/consul" || true
	if [ "$code" = 0 ]; then
		rm -rf "$run"
	else
		log "logs kept in $run"
	fi
}
trap cleanup EXIT

log "step check-tree"
scripts/check-tree.sh || die "check-tree" "see the lines above"

log "step install"
scripts/zk.sh install || die "install ZooKeeper" "scripts/zk.sh install exited $?"
scripts/redis.sh install || die "install Redis" "scripts/redis.sh install exited $?"
scripts/consul.sh install >/dev/null || die "install Consul" "scripts/consul.sh install exited $?"

if [ "${COORD_SELFTEST:-1}" != 0 ]; then
	log "step selftest"
	scripts/selftest.sh "$run/selftest" || die "selftest" "scripts/selftest.sh exited $?" "$run/selftest"
fi

log "step start servers"
started=()
servers=()
if [ -z "${COORD_TEST_ZK:-}" ]; then
	COORD_TEST_ZK=$(scripts/zk.sh start "$run/zk") ||
		die "start ZooKeeper" "scripts/zk.sh start exited $?" "$run/zk/stdout.log"
	started+=(zk)
	servers+=("$(scripts/zk.sh version "$run/zk") on $COORD_TEST_ZK")
else
	servers+=("ZooKeeper on $COORD_TEST_ZK (given)")
fi
if [ -z "${COORD_TEST_CONSUL:-}" ]; then
	COORD_TEST_CONSUL=$(scripts/consul.sh start "$run/consul") ||
		die "start Consul" "scripts/consul.sh start exited $?" "$run/consul/consul.log"
	started+=(consul)
	servers+=("$(scripts/consul.sh version) on $COORD_TEST_CONSUL")
else
	servers+=("Consul on $COORD_TEST_CONSUL (given)")
fi
servers+=("etcd $(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3) embedded" "$(scripts/redis.sh version)")
export COORD_TEST_ZK COORD_TEST_CONSUL
# What this script started must be there: its absence fails the run.
if [ -z "${COORD_TEST_REQUIRE:-}" ]; then
	COORD_TEST_REQUIRE=$(IFS=,; echo "${started[*]:-},redis")
fi
export COORD_TEST_REQUIRE
summary_servers=$(IFS=';'; echo "${servers[*]}" | sed 's/;/; /g')
log "servers: $summary_servers; required: $COORD_TEST_REQUIRE"

log "step go test"
go build -o "$run/testsummary" ./internal/testsummary || die "go test" "cannot build internal/testsummary"
status=0
# ./models/ first: go test starts packages in the order named, two at a
# time on two CPUs, and models, the longest (about 10 minutes), started
# among the last in path order and ran on alone at the end (about a minute
# of wall time saved in the run measured; ./... names it again, which go
# test ignores).
go test -json -race -count=1 -timeout 30m "$@" ./models/ ./... | tee "$run/go-test.json" |
	"$run/testsummary" -servers "$summary_servers" -since "$started_at" \
		-allow-none="$([ "${COORD_ALLOW_NO_TESTS:-0}" = 1 ] && echo true || echo false)" || status=$?
[ "$status" = 0 ] || die "go test" "tests failed (the summary above names them)"
