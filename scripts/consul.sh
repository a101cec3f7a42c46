#!/usr/bin/env bash
# consul.sh: obtain a Consul binary and run a throw-away dev agent for tests.
#
#   scripts/consul.sh install        build (once) and print the cached binary's path
#   scripts/consul.sh start DIR [TOKEN]
#                                    start a dev agent with its state in DIR; print
#                                    host:port. With TOKEN, ACLs are on (default deny)
#                                    and TOKEN is the management token. When DIR/tls
#                                    holds ca.pem, server.pem and server-key.pem, the
#                                    agent also serves HTTPS, to clients with a
#                                    certificate that ca.pem signed; its host:port
#                                    is written to DIR/consul.https.
#                                    With COORD_CONSUL_PERSIST=1 the agent is a
#                                    single server (not -dev) keeping its state in
#                                    DIR/data, so that restart finds it again.
#                                    COORD_CONSUL_MAX_CONNS_PER_CLIENT=N sets the
#                                    agent's limit of HTTP connections per client
#                                    address (Consul's default: 200).
#   scripts/consul.sh stop DIR       stop the agent started in DIR
#   scripts/consul.sh restart DIR    stop the agent started in DIR (if it runs) and
#                                    start it again with the same config and ports
#   scripts/consul.sh version        print the version of the cached binary
#   scripts/consul.sh cluster DIR N  start a cluster of N servers (DIR/m0 ...) and a
#                                    client agent (DIR/client) that joins them, all on
#                                    loopback, keeping their state on disk; print the
#                                    client agent's host:port (clients talk to it, as
#                                    to a local agent)
#   scripts/consul.sh stop DIR/mI    stop server I of the cluster in DIR (SIGTERM;
#   scripts/consul.sh restart DIR/mI crash kills it), or start it again (restart of a stopped one)
#   scripts/consul.sh crash DIR      kill the agent in DIR (SIGKILL: it does not shut
#                                    down; restart starts it again)
#   scripts/consul.sh leader DIR     print the index of the cluster's leader
#   scripts/consul.sh stop DIR       stop every agent, when DIR holds a cluster
#
# Consul is not in Debian's packages, so the binary is built from the Go module
# proxy and cached outside the repository, keyed by version:
#   ${COORD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coord}/consul/<version>/consul
# The build's modules and objects go to a scratch GOPATH inside that cache
# directory, removed afterwards; its log stays as <version>/build.log. A warm
# cache never rebuilds. Nothing is written outside the cache and DIR.
#
# COORD_CONSUL_BUILD replaces the build step with a command run as
# `$COORD_CONSUL_BUILD OUT` that must leave a binary at OUT; the scripts' own
# tests use it to run the cold path without a 10-minute build.
set -euo pipefail
script=consul.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

CONSUL_VERSION=${CONSUL_VERSION:-1.22.0}
bin_dir=$cache_root/consul/$CONSUL_VERSION
bin=$bin_dir/consul

# build OUT LOG builds Consul into OUT, its output in LOG. It runs in a
# subshell: its directory, environment and trap end with it.
build() (
	local out=$1 logfile=$2
	local work
	work=$(mktemp -d "$bin_dir/build.XXXXXX")
	trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
	export GOPATH=$work/gopath GOMODCACHE=$work/gopath/pkg/mod GOCACHE=$work/gocache
	# Consul's own submodules are not all in the checksum database.
	export GONOSUMDB=github.com/hashicorp/consul GOFLAGS=-mod=mod GOTOOLCHAIN=local
	local src
	src=$(cd "$work" && go mod download -json "github.com/hashicorp/consul@v$CONSUL_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$src" ] || { echo "could not download github.com/hashicorp/consul@v$CONSUL_VERSION" >&2; exit 1; }
	# Under `||` in the caller, set -e is off here: each step checks itself.
	cp -r "$src" "$work/src" || exit 1
	chmod -R u+w "$work/src" || exit 1
	cd "$work/src" || exit 1
	# Drop the replace directives that point at the repository's own
	# submodules, so that their published versions are used.
	local m
	go mod edit -json | sed -n 's/.*"Path": "\(github.com\/hashicorp\/consul[^"]*\)".*/\1/p' | sort -u |
		while read -r m; do go mod edit -dropreplace="$m" 2>/dev/null || true; done
	go build -trimpath -ldflags "-s -w" -o "$out" .
) >>"$2" 2>&1

install() {
	if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
		echo "$bin"
		return
	fi
	mkdir -p "$bin_dir"
	local logfile=$bin_dir/build.log
	: >"$logfile"
	rm -f "$bin.tmp"
	if [ -n "${COORD_CONSUL_BUILD:-}" ]; then
		log "building consul v$CONSUL_VERSION with COORD_CONSUL_BUILD ($COORD_CONSUL_BUILD)"
		$COORD_CONSUL_BUILD "$bin.tmp" >>"$logfile" 2>&1 || {
			rm -f "$bin.tmp"
			die "install (build consul v$CONSUL_VERSION)" "COORD_CONSUL_BUILD failed" "$logfile"
		}
	else
		command -v go >/dev/null || die "install" "go is needed to build consul and is not on PATH"
		log "building consul v$CONSUL_VERSION from the Go module proxy (about 10 minutes, once; log: $logfile)"
		build "$bin.tmp" "$logfile" || {
			rm -f "$bin.tmp"
			die "install (build consul v$CONSUL_VERSION)" "go build failed" "$logfile"
		}
	fi
	"$bin.tmp" version >>"$logfile" 2>&1 || {
		rm -f "$bin.tmp"
		die "install (check consul v$CONSUL_VERSION)" "the built binary does not run" "$logfile"
	}
	mv "$bin.tmp" "$bin"
	log "cached $bin"
	echo "$bin"
}

# leader_of ADDR prints the agent's raft leader ("" while there is none).
leader_of() {
	if command -v curl >/dev/null; then
		curl -fsS "http://$1/v1/status/leader" 2>/dev/null
	else
		"$bin" operator raft list-peers -http-addr="http://$1" 2>/dev/null | awk '$4 == "leader" {print $2}'
	fi
}

start() {
	local dir=${1:?usage: consul.sh start DIR [TOKEN]} token=${2:-}
	install >/dev/null
	mkdir -p "$dir/data"
	dir=$(cd "$dir" && pwd)
	local attempt rc
	for attempt in 1 2 3 4 5; do
		rc=0
		configure "$dir" "$token"
		launch "$dir" "127.0.0.1:$(cat "$dir/consul.http")" start "$attempt" || rc=$?
		[ "$rc" = 75 ] || return "$rc"
		log "a port given to the agent was taken before it bound it; trying new ports"
	done
	die start "the agent found a port taken 5 times running" "$dir/consul.log"
}

# cluster DIR N starts N servers and a client agent that form one cluster
# and waits until each agent knows the leader (the servers start together:
# none elects one before a quorum has joined).
cluster() {
	local dir=${1:?usage: consul.sh cluster DIR N} n=${2:?usage: consul.sh cluster DIR N}
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die cluster "N must be a whole number of servers, not $n"
	install >/dev/null
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local attempt i rc join members
	for attempt in 1 2 3 4 5; do
		members=()
		for ((i = 0; i < n; i++)); do
			members+=("$dir/m$i")
		done
		members+=("$dir/client")
		join=""
		for m in "${members[@]}"; do
			rm -rf "$m"
			mkdir -p "$m/data"
			COORD_CONSUL_PERSIST="" configure "$m" ""
		done
		for ((i = 0; i < n; i++)); do
			join+="${join:+, }\"127.0.0.1:$(cat "$dir/m$i/consul.serf")\""
		done
		for ((i = 0; i <= n; i++)); do
			local m=${members[$i]} name=m$i server=true
			[ "$i" = "$n" ] && name=client server=false
			cat >>"$m/agent.hcl" <<HCL
node_name = "$name"
server = $server
disable_update_check = true
disable_anonymous_signature = true
retry_join = [$join]
retry_interval = "1s"
performance {
  raft_multiplier = 1
}
HCL
			[ "$server" = true ] && echo "bootstrap_expect = $n" >>"$m/agent.hcl"
			echo "" >"$m/consul.mode"
		done
		echo "$n" >"$dir/consul.cluster"
		for m in "${members[@]}"; do
			spawn "$m"
		done
		rc=0
		for m in "${members[@]}"; do
			# In a subshell: an agent that fails stops the others below.
			(await "$m" "127.0.0.1:$(cat "$m/consul.http")" cluster "$attempt" >/dev/null) || { rc=$?; break; }
		done
		if [ "$rc" = 0 ]; then
			cat "$dir/client/consul.addr"
			return
		fi
		stop "$dir"
		[ "$rc" = 75 ] || return "$rc"
		log "a port given to an agent was taken before it bound it; trying new ports"
	done
	die cluster "the agents found a port taken 5 times running"
}

# leader DIR prints the index of the server of the cluster in DIR that leads.
leader() {
	local dir=${1:?usage: consul.sh leader DIR} n i lead
	n=$(cat "$dir/consul.cluster" 2>/dev/null) || die leader "no cluster was started in $dir"
	lead=$(leader_of "$(cat "$dir/client/consul.addr")" | tr -d '"') || true
	for ((i = 0; i < n; i++)); do
		if [ -n "$lead" ] && [ "$lead" = "127.0.0.1:$(cat "$dir/m$i/consul.server")" ] && [ -f "$dir/m$i/consul.pid" ]; then
			echo "$i"
			return
		fi
	done
	die leader "no server of the cluster in $dir leads now"
}

# configure DIR TOKEN writes the agent's configuration in DIR, on new free
# ports (the HTTP one in DIR/consul.http, the Serf LAN one in DIR/consul.serf
# and the server RPC one in DIR/consul.server).
configure() {
	local dir=$1 token=$2
	local http dns serf_lan serf_wan server grpc https=-1 tls=""
	local ports
	mapfile -t ports < <(free_ports 7)
	http=${ports[0]} dns=${ports[1]} serf_lan=${ports[2]} serf_wan=${ports[3]} server=${ports[4]} grpc=${ports[5]}
	if [ -f "$dir/tls/ca.pem" ] && [ -f "$dir/tls/server.pem" ] && [ -f "$dir/tls/server-key.pem" ]; then
		https=${ports[6]}
		tls=1
	fi
	echo "$http" >"$dir/consul.http"
	echo "$serf_lan" >"$dir/consul.serf"
	echo "$server" >"$dir/consul.server"
	cat >"$dir/agent.hcl" <<HCL
datacenter = "dc1"
data_dir = "$dir/data"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
advertise_addr = "127.0.0.1"
log_level = "WARN"
session_ttl_min = "1s"
ports {
  http = $http
  dns = $dns
  serf_lan = $serf_lan
  serf_wan = $serf_wan
  server = $server
  grpc = $grpc
  grpc_tls = -1
  https = $https
}
HCL
	if [ -n "$tls" ]; then
		cat >>"$dir/agent.hcl" <<HCL
tls {
  defaults {
    ca_file = "$dir/tls/ca.pem"
    cert_file = "$dir/tls/server.pem"
    key_file = "$dir/tls/server-key.pem"
    verify_incoming = false
  }
  https {
    verify_incoming = true
  }
}
HCL
		echo "127.0.0.1:$https" >"$dir/consul.https"
	fi
	local mode=-dev
	if [ "${COORD_CONSUL_PERSIST:-}" = 1 ]; then
		# A real single-server agent: state on disk, kept across restarts.
		# (-dev turns off the update check and anonymous signature; a
		# server must be told, or it would dial out.)
		mode=""
		cat >>"$dir/agent.hcl" <<HCL
server = true
bootstrap_expect = 1
disable_update_check = true
disable_anonymous_signature = true
performance {
  raft_multiplier = 1
}
HCL
	fi
	echo "$mode" >"$dir/consul.mode"
	if [ -n "${COORD_CONSUL_MAX_CONNS_PER_CLIENT:-}" ]; then
		cat >>"$dir/agent.hcl" <<HCL
limits {
  http_max_conns_per_client = $COORD_CONSUL_MAX_CONNS_PER_CLIENT
}
HCL
	fi
	if [ -n "$token" ]; then
		cat >>"$dir/agent.hcl" <<HCL
acl {
  enabled = true
  default_policy = "deny"
  tokens {
    initial_management = "$token"
  }
}
HCL
	fi
}

# launch DIR ADDR STEP [ATTEMPT] runs the agent configured in DIR and waits
# until it has a leader; STEP names what failed in the message. With ATTEMPT
# (a start, which can pick new ports), an agent that exits because a port
# was taken meanwhile makes it return 75 instead of failing.
launch() {
	spawn "$1"
	await "$@"
}

# spawn DIR runs the agent configured in DIR in the background.
spawn() {
	local dir=$1 mode
	mode=$(cat "$dir/consul.mode")
	size "$dir/consul.log" >"$dir/consul.offset"
	# shellcheck disable=SC2086 # $mode is empty or one flag
	"$bin" agent $mode -config-file "$dir/agent.hcl" >>"$dir/consul.log" 2>&1 &
	echo $! >"$dir/consul.pid"
}

# await DIR ADDR STEP [ATTEMPT] waits until the agent spawned in DIR knows
# a leader (see launch).
await() {
	local dir=$1 addr=$2 step=$3 attempt=${4:-}
	local logfile=$dir/consul.log offset
	offset=$(cat "$dir/consul.offset")
	local leader _
	for _ in $(seq 1 300); do
		if leader=$(leader_of "$addr") && [ -n "$leader" ] && [ "$leader" != '""' ]; then
			echo "$addr" >"$dir/consul.addr"
			echo "$addr"
			return
		fi
		if ! kill -0 "$(cat "$dir/consul.pid")" 2>/dev/null; then
			rm -f "$dir/consul.pid"
			if [ -n "$attempt" ] && bind_lost "$logfile" "$offset"; then
				return 75
			fi
			die "$step" "the consul agent exited" "$logfile"
		fi
		sleep 0.1
	done
	stop_pidfile "$dir/consul.pid"
	die "$step" "the consul agent elected no leader within 30s; stopped it" "$logfile"
}

stop() {
	local dir=${1:?usage: consul.sh stop DIR} i
	if [ -f "$dir/consul.cluster" ]; then
		stop_pidfile "$dir/client/consul.pid"
		for ((i = 0; i < $(cat "$dir/consul.cluster"); i++)); do
			stop_pidfile "$dir/m$i/consul.pid"
		done
		return
	fi
	stop_pidfile "$dir/consul.pid"
}

crash() { crash_pidfile "${1:?usage: consul.sh crash DIR}/consul.pid"; }

restart() {
	local dir=${1:?usage: consul.sh restart DIR}
	[ -f "$dir/agent.hcl" ] && [ -f "$dir/consul.addr" ] && [ -f "$dir/consul.mode" ] ||
		die "restart" "no agent was started in $dir"
	dir=$(cd "$dir" && pwd)
	install >/dev/null
	stop_pidfile "$dir/consul.pid"
	launch "$dir" "$(cat "$dir/consul.addr")" restart
}

case "${1:-}" in
install) install ;;
start) start "${2:-}" "${3:-}" ;;
stop) stop "${2:-}" ;;
crash) crash "${2:-}" ;;
restart) restart "${2:-}" ;;
cluster) cluster "${2:-}" "${3:-}" ;;
leader) leader "${2:-}" ;;
# sed reads all of its input: head would exit first and, under pipefail, the
# writer's SIGPIPE would fail the command.
version) "$(install)" version | sed -n 1p ;;
*)
	echo "usage: $0 install | start DIR [TOKEN] | stop DIR | crash DIR | restart DIR | version | cluster DIR N | leader DIR" >&2
	exit 2
	;;
esac
