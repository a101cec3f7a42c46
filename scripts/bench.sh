#!/usr/bin/env bash
# bench.sh: the side-by-side benchmark table (internal/bench) on every
# backend: an embedded etcd and a standalone one (always), ZooKeeper and
# Consul (installed if missing and started on loopback ports, unless
# COORD_TEST_ZK / COORD_TEST_CONSUL already name servers). Extra arguments go
# to the harness (-rounds N, -only REGEX, -big, -cpuprofile FILE). The table
# goes to standard output, progress to standard error.
set -euo pipefail
script=bench.sh
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

run=$(mktemp -d "${TMPDIR:-/tmp}/coord-bench.XXXXXX")
cleanup() {
	scripts/zk.sh stop "$run/zk" || true
	scripts/consul.sh stop "$run/consul" || true
	rm -rf "$run"
}
trap cleanup EXIT

log "step install"
scripts/zk.sh install || die "install ZooKeeper" "scripts/zk.sh install exited $?"
scripts/consul.sh install >/dev/null || die "install Consul" "scripts/consul.sh install exited $?"

log "step start servers"
if [ -z "${COORD_TEST_ZK:-}" ]; then
	COORD_TEST_ZK=$(scripts/zk.sh start "$run/zk") ||
		die "start ZooKeeper" "scripts/zk.sh start exited $?" "$run/zk/stdout.log"
	COORD_BENCH_ZK_VERSION=$(scripts/zk.sh version "$run/zk")
	export COORD_BENCH_ZK_VERSION
fi
if [ -z "${COORD_TEST_CONSUL:-}" ]; then
	# 100 simulated proxies, each watching two nodes with a blocking query
	# (one connection each), share this host's one client address: real
	# proxies run on their own hosts, each with its local agent. Consul's
	# default of 200 connections per address would turn them away (429).
	COORD_TEST_CONSUL=$(COORD_CONSUL_MAX_CONNS_PER_CLIENT=1000 scripts/consul.sh start "$run/consul") ||
		die "start Consul" "scripts/consul.sh start exited $?" "$run/consul/consul.log"
fi
export COORD_TEST_ZK COORD_TEST_CONSUL

log "step bench"
go build -o "$run/bench" ./internal/bench || die "bench" "cannot build internal/bench"
"$run/bench" "$@" || die "bench" "the harness exited $?"
