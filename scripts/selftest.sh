#!/usr/bin/env bash
# selftest.sh DIR: the scripts' own tests. They run the paths a fresh machine
# runs (an empty COORD_CACHE, packages missing) without the 10-minute Consul
# build or a real package download: stand-ins take the place of the build
# step and of apt-get, and "install" by copying or linking the real artefacts,
# so every line a fresh machine executes after the install is executed here.
# They also break each step on purpose and check that the failure is one line
# naming the step and its log, and that nothing is left running.
#
# Needs the real artefacts: scripts/test.sh installs them first. Everything is
# written under DIR.
set -euo pipefail
script=selftest.sh
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

t=${1:?usage: selftest.sh DIR}
mkdir -p "$t"
t=$(cd "$t" && pwd)

real_consul=$("$repo/scripts/consul.sh" install)
real_zk_jar=${COORD_ZK_JAR:-/usr/share/java/zookeeper.jar}
real_redis=$(command -v "${COORD_REDIS_SERVER:-redis-server}")
[ -f "$real_zk_jar" ] || die "selftest" "no ZooKeeper jar at $real_zk_jar: run scripts/zk.sh install"

failures=0
cases=0
fail() {
	echo "$script: FAIL: $current: $*" >&2
	failures=$((failures + 1))
}

# A stand-in apt-get: "installs" zookeeper and redis-server by linking the real
# artefacts where COORD_ZK_JAR and COORD_REDIS_SERVER point; refuses when
# STANDIN_APT_FAIL=1. Every call is logged to $t/apt.calls.
mkdir -p "$t/bin"
cat >"$t/bin/apt-get" <<EOF
#!/usr/bin/env bash
echo "\$*" >>"$t/apt.calls"
[ "\${STANDIN_APT_FAIL:-0}" = 1 ] && { echo "E: stand-in apt-get refuses" >&2; exit 100; }
case "\$1" in update) exit 0 ;; install) ;; *) exit 1 ;; esac
for p in "\$@"; do
	case "\$p" in
	zookeeper) mkdir -p "\$(dirname "\$COORD_ZK_JAR")"; ln -sf "$real_zk_jar" "\$COORD_ZK_JAR" ;;
	redis-server) mkdir -p "\$(dirname "\$COORD_REDIS_SERVER")"; ln -sf "$real_redis" "\$COORD_REDIS_SERVER" ;;
	esac
done
EOF
# A stand-in consul that answers `version` and dies at `agent`.
cat >"$t/bin/consul-dies" <<'EOF'
#!/usr/bin/env bash
[ "$1" = version ] && { echo "Consul v0.0.0-standin"; exit 0; }
echo "stand-in consul: refusing to run an agent" >&2
exit 1
EOF
# Stand-ins for a port taken by another process between the moment a starter
# picks it and the moment the server binds it: the agent (or the JVM) says
# so and exits, the first time or every time ($t/bind.always exists); after
# that they run the real program.
cat >"$t/bin/consul-bind-lost" <<EOF
#!/usr/bin/env bash
if [ "\$1" = agent ] && { [ -e "$t/bind.always" ] || [ ! -e "$t/bind.lost.consul" ]; }; then
	touch "$t/bind.lost.consul"
	echo "==> Error starting agent: listen tcp 127.0.0.1:1: bind: address already in use" >&2
	exit 1
fi
exec "$real_consul" "\$@"
EOF
mkdir -p "$t/java-bin"
real_java=$(command -v java)
cat >"$t/java-bin/java" <<EOF
#!/usr/bin/env bash
if [ -e "$t/bind.always" ] || [ ! -e "$t/bind.lost.zk" ]; then
	touch "$t/bind.lost.zk"
	echo "java.net.BindException: Address already in use"
	exit 1
fi
exec "$real_java" "\$@"
EOF
chmod +x "$t/bin/apt-get" "$t/bin/consul-dies" "$t/bin/consul-bind-lost" "$t/java-bin/java"
export COORD_APT_GET=$t/bin/apt-get

# run CASE CMD...: runs CMD with stdout in $t/CASE.out, stderr in $t/CASE.err,
# its status in $status. HOME is a scratch directory, so that anything written
# there is seen.
run() {
	current=$1
	cases=$((cases + 1))
	shift
	mkdir -p "$t/home"
	status=0
	(cd "$t" && HOME=$t/home "$@") >"$t/$current.out" 2>"$t/$current.err" || status=$?
}

# expect_ok / expect_fail STEP: the last run passed, or failed with its last
# "SCRIPT: STEP... failed: ... (log: FILE)" line naming an existing log.
expect_ok() {
	[ "$status" = 0 ] || fail "exit $status, want 0; stderr: $(tail -n 3 "$t/$current.err")"
}
expect_fail() {
	local step=$1 last logfile
	[ "$status" != 0 ] || { fail "exit 0, want a failure"; return; }
	last=$(grep ' failed: ' "$t/$current.err" | tail -n 1 || true)
	case "$last" in
	*": $step"*" failed: "*) ;;
	*) fail "last stderr line does not name step '$step': $last" ;;
	esac
	if [ "${2:-}" != nolog ]; then
		logfile=$(sed -n 's/.*(log: \(.*\))$/\1/p' <<<"$last")
		[ -n "$logfile" ] && [ -e "$logfile" ] || fail "the message names no existing log: $last"
	fi
}
# nothing_runs PATTERN: no process has PATTERN in its command line.
nothing_runs() {
	local left
	left=$(pgrep -af -- "$1" | grep -v -e pgrep -e selftest.sh || true)
	[ -z "$left" ] || fail "left running: $left"
}
# members SCRIPT VERB NAME WANT: SCRIPT VERB starts three servers in
# $t/NAME and prints what matches WANT; one of them leads, stops and comes
# back, is killed (crash) and comes back; stop stops them all.
members() {
	local sh=$1 verb=$2 name=$3 want=$4 lead pid dir=$t/$3
	run "$name" "$repo/scripts/$sh" "$verb" "$dir" 3
	expect_ok
	[[ "$(cat "$t/$name.out" 2>/dev/null)" =~ $want ]] || fail "printed '$(cat "$t/$name.out")', want $want"
	lead=$("$repo/scripts/$sh" leader "$dir" || true)
	[[ "$lead" =~ ^[0-2]$ ]] || fail "leader printed '$lead'"
	run "$name-member-stop" "$repo/scripts/$sh" stop "$dir/m$lead"
	expect_ok
	run "$name-member-restart" "$repo/scripts/$sh" restart "$dir/m$lead"
	expect_ok
	pid=$(cat "$dir/m$lead"/*.pid)
	run "$name-member-crash" "$repo/scripts/$sh" crash "$dir/m$lead"
	expect_ok
	! kill -0 "$pid" 2>/dev/null || fail "member $lead (pid $pid) still runs after crash"
	run "$name-member-restart-after-crash" "$repo/scripts/$sh" restart "$dir/m$lead"
	expect_ok
	run "$name-stop" "$repo/scripts/$sh" stop "$dir"
	expect_ok
	nothing_runs "$dir"
}
home_untouched() {
	[ -z "$(ls -A "$t/home")" ] || fail "wrote into HOME: $(ls -A "$t/home")"
}

# --- Consul ---------------------------------------------------------------
export COORD_CACHE=$t/cache-cold
run consul-cold env COORD_CONSUL_BUILD="cp $real_consul" "$repo/scripts/consul.sh" start "$t/consul-cold"
expect_ok
addr=$(cat "$t/consul-cold.out" 2>/dev/null || true)
[[ "$addr" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "printed '$addr', want 127.0.0.1:PORT"
[ -x "$COORD_CACHE/consul/${CONSUL_VERSION:-1.22.0}/consul" ] || fail "no binary in the cold cache"
[ -f "$COORD_CACHE/consul/${CONSUL_VERSION:-1.22.0}/build.log" ] || fail "no build log in the cache"
leftovers=$(ls "$COORD_CACHE/consul/${CONSUL_VERSION:-1.22.0}" | grep -v -x -e consul -e build.log || true)
[ -z "$leftovers" ] || fail "build leftovers in the cache: $leftovers"
[ -s "$t/consul-cold/consul.pid" ] && kill -0 "$(cat "$t/consul-cold/consul.pid")" 2>/dev/null || fail "the agent does not run"
home_untouched
run consul-stop "$repo/scripts/consul.sh" stop "$t/consul-cold"
expect_ok
nothing_runs "$t/consul-cold"
[ ! -e "$t/consul-cold/consul.pid" ] || fail "pid file left"

# A cluster: three servers and a client agent (see members).
members consul.sh cluster consul-cluster '^127\.0\.0\.1:[0-9]+$'

# `version` prints one line and succeeds every time (it once piped into
# head, and the writer's SIGPIPE failed it now and then under pipefail).
current=consul-version
cases=$((cases + 1))
for _ in $(seq 1 20); do
	v=$("$repo/scripts/consul.sh" version 2>/dev/null) || { fail "consul.sh version exited $?"; break; }
	[[ "$v" =~ ^Consul\ v[0-9] ]] || { fail "consul.sh version printed '$v'"; break; }
done

# Warm: the cached binary is used; a broken build step is never reached.
# COORD_CONSUL_PERSIST: a server whose restart comes back on the same address.
run consul-warm env COORD_CONSUL_BUILD=false COORD_CONSUL_PERSIST=1 "$repo/scripts/consul.sh" start "$t/consul-warm"
expect_ok
addr=$(cat "$t/consul-warm.out" 2>/dev/null || true)
grep -q '^disable_update_check = true' "$t/consul-warm/agent.hcl" || fail "a persistent agent would check for updates (dial out)"
run consul-restart "$repo/scripts/consul.sh" restart "$t/consul-warm"
expect_ok
[ "$(cat "$t/consul-restart.out" 2>/dev/null)" = "$addr" ] || fail "restarted at '$(cat "$t/consul-restart.out")', want '$addr'"
"$repo/scripts/consul.sh" stop "$t/consul-warm"
nothing_runs "$t/consul-warm"
run consul-restart-none "$repo/scripts/consul.sh" restart "$t/consul-never"
expect_fail restart nolog

# The build fails: one line naming the step and the build log; nothing cached.
export COORD_CACHE=$t/cache-broken
run consul-build-fails env COORD_CONSUL_BUILD=false "$repo/scripts/consul.sh" start "$t/consul-broken"
expect_fail "install (build consul"
[ -z "$(ls "$COORD_CACHE/consul/"*/ 2>/dev/null | grep -v '^build.log$')" ] || fail "a failed build left files: $(ls "$COORD_CACHE/consul/"*/)"
nothing_runs "$t/consul-broken"

# The agent dies at start: one line naming the agent's log; no pid file left.
export COORD_CACHE=$t/cache-dies
run consul-agent-dies env COORD_CONSUL_BUILD="cp $t/bin/consul-dies" "$repo/scripts/consul.sh" start "$t/consul-dies"
expect_fail start
[ ! -e "$t/consul-dies/consul.pid" ] || fail "pid file left"
nothing_runs "$t/consul-dies"

# A port is taken before the agent binds it: the start picks new ports and
# succeeds; when every attempt loses its ports, it fails naming the log.
export COORD_CACHE=$t/cache-bind
rm -f "$t/bind.always" "$t/bind.lost.consul"
run consul-port-taken env COORD_CONSUL_BUILD="cp $t/bin/consul-bind-lost" "$repo/scripts/consul.sh" start "$t/consul-bind"
expect_ok
grep -q 'trying new ports' "$t/consul-port-taken.err" || fail "the retry is not said"
[ -s "$t/consul-bind/consul.pid" ] && kill -0 "$(cat "$t/consul-bind/consul.pid")" 2>/dev/null || fail "the agent does not run"
[ "$(cat "$t/consul-port-taken.out" 2>/dev/null)" = "127.0.0.1:$(cat "$t/consul-bind/consul.http")" ] || fail "printed '$(cat "$t/consul-port-taken.out")', not the port the agent has"
"$repo/scripts/consul.sh" stop "$t/consul-bind"
touch "$t/bind.always"
run consul-port-always-taken "$repo/scripts/consul.sh" start "$t/consul-bind-always"
expect_fail start
[ "$(grep -c 'trying new ports' "$t/consul-port-always-taken.err")" = 5 ] || fail "want 5 attempts: $(cat "$t/consul-port-always-taken.err")"
nothing_runs "$t/consul-bind"
rm -f "$t/bind.always"

# --- ZooKeeper ------------------------------------------------------------
export COORD_ZK_JAR=$t/zk-root/usr/share/java/zookeeper.jar
rm -f "$t/apt.calls"
run zk-cold "$repo/scripts/zk.sh" start "$t/zk-cold"
expect_ok
grep -q '^install .*zookeeper' "$t/apt.calls" 2>/dev/null || fail "apt-get install zookeeper was not called"
addr=$(cat "$t/zk-cold.out" 2>/dev/null || true)
[[ "$addr" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "printed '$addr', want 127.0.0.1:PORT"
version=$("$repo/scripts/zk.sh" version "$t/zk-cold" || true)
[[ "$version" =~ ^ZooKeeper\ [0-9]+\.[0-9]+ ]] || fail "version printed '$version'"
home_untouched
# restart: the same address again, a server that serves.
run zk-restart "$repo/scripts/zk.sh" restart "$t/zk-cold"
expect_ok
[ "$(cat "$t/zk-restart.out" 2>/dev/null)" = "$addr" ] || fail "restarted at '$(cat "$t/zk-restart.out")', want '$addr'"
[[ "$("$repo/scripts/zk.sh" version "$t/zk-cold" || true)" =~ ^ZooKeeper ]] || fail "the restarted server does not answer"
run zk-stop "$repo/scripts/zk.sh" stop "$t/zk-cold"
expect_ok
nothing_runs "$t/zk-cold"

# An ensemble of three servers (see members).
members zk.sh ensemble zk-ensemble '^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$'
run zk-ensemble-bad-n "$repo/scripts/zk.sh" ensemble "$t/zk-ens-bad" x
expect_fail ensemble nolog

# The server says why it stops in its own log (a logging binding is on the
# class path; without one it said nothing at all).
grep -q 'running in standalone mode' "$t/zk-cold/zookeeper.log" 2>/dev/null || fail "the server wrote no zookeeper.log"

# Its port is taken before it binds it: the start picks another port.
rm -f "$t/bind.lost.zk"
run zk-port-taken env PATH="$t/java-bin:$PATH" "$repo/scripts/zk.sh" start "$t/zk-bind"
expect_ok
grep -q 'trying another' "$t/zk-port-taken.err" || fail "the retry is not said"
[[ "$("$repo/scripts/zk.sh" version "$t/zk-bind" || true)" =~ ^ZooKeeper ]] || fail "the server does not answer"
"$repo/scripts/zk.sh" stop "$t/zk-bind"
touch "$t/bind.always"
run zk-port-always-taken env PATH="$t/java-bin:$PATH" "$repo/scripts/zk.sh" start "$t/zk-bind-always"
expect_fail start
nothing_runs "$t/zk-bind"
rm -f "$t/bind.always"

run zk-restart-none "$repo/scripts/zk.sh" restart "$t/zk-never"
expect_fail restart nolog

export COORD_ZK_JAR=$t/zk-none/zookeeper.jar
run zk-apt-fails env STANDIN_APT_FAIL=1 "$repo/scripts/zk.sh" start "$t/zk-apt"
expect_fail install
nothing_runs "$t/zk-apt"

# A jar that is not ZooKeeper: the server exits; the message names its log.
mkdir -p "$t/zk-bad"
: >"$t/zk-bad/zookeeper.jar"
export COORD_ZK_JAR=$t/zk-bad/zookeeper.jar
run zk-server-dies "$repo/scripts/zk.sh" start "$t/zk-dies"
expect_fail start
[ ! -e "$t/zk-dies/zk.pid" ] || fail "pid file left"
nothing_runs "$t/zk-dies"
# So do an ensemble's members: one line naming a log, none left running.
run zk-ensemble-dies "$repo/scripts/zk.sh" ensemble "$t/zk-ens-dies" 3
expect_fail ensemble
nothing_runs "$t/zk-ens-dies"
unset COORD_ZK_JAR

# --- Redis ----------------------------------------------------------------
export COORD_REDIS_SERVER=$t/redis-root/usr/bin/redis-server
rm -f "$t/apt.calls"
run redis-cold "$repo/scripts/redis.sh" install "$t/redis-install.log"
expect_ok
grep -q '^install .*redis-server' "$t/apt.calls" 2>/dev/null || fail "apt-get install redis-server was not called"
version=$("$repo/scripts/redis.sh" version || true)
[[ "$version" =~ ^Redis\ [0-9]+\.[0-9]+ ]] || fail "version printed '$version'"
export COORD_REDIS_SERVER=$t/redis-none/redis-server
run redis-apt-fails env STANDIN_APT_FAIL=1 "$repo/scripts/redis.sh" install "$t/redis-fail.log"
expect_fail install
unset COORD_REDIS_SERVER

# --- check-tree -----------------------------------------------------------
tree=$t/tree
git init -q "$tree"
printf '#!/bin/sh\necho hi\n' >"$tree/run.sh"
chmod +x "$tree/run.sh"
echo small >"$tree/a.txt"
git -C "$tree" add -A
run tree-clean "$repo/scripts/check-tree.sh" "$tree"
expect_ok
head -c 1100000 /dev/zero >"$tree/big.dat"
git -C "$tree" add big.dat
run tree-big "$repo/scripts/check-tree.sh" "$tree"
expect_fail check-tree nolog
grep -q 'big.dat' "$t/tree-big.err" || fail "the large file is not named"
git -C "$tree" rm -q --cached big.dat
cp "$(type -P true)" "$tree/tool"
git -C "$tree" add tool
run tree-binary "$repo/scripts/check-tree.sh" "$tree"
expect_fail check-tree nolog
grep -q 'tool (a compiled executable)' "$t/tree-binary.err" || fail "the binary is not named"

# --- test.sh: a broken cold path fails the run, naming the step ------------
# Consul's install fails (empty cache, a build step that fails).
run testsh-install-fails env -u COORD_TEST_ZK -u COORD_TEST_CONSUL TMPDIR="$t" COORD_CACHE="$t/cache-testsh" COORD_CONSUL_BUILD=false \
	COORD_SELFTEST=0 "$repo/scripts/test.sh" -run '^$'
expect_fail "install Consul" nolog
# Consul's agent dies after ZooKeeper started: the run fails naming the step
# and stops ZooKeeper.
run testsh-start-fails env -u COORD_TEST_ZK -u COORD_TEST_CONSUL TMPDIR="$t" COORD_CACHE="$t/cache-testsh-dies" COORD_CONSUL_BUILD="cp $t/bin/consul-dies" \
	COORD_SELFTEST=0 "$repo/scripts/test.sh" -run '^$'
expect_fail "start Consul"
nothing_runs "$t/coord-test."

if [ "$failures" -gt 0 ]; then
	die "selftest" "$failures of $cases cases failed (outputs in $t)"
fi
log "$cases cases passed"
