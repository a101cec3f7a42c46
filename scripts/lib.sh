# lib.sh: helpers shared by the scripts (sourced, not run).
#
# Rules every script keeps, because a fresh machine runs paths a warm one
# never does: every function variable is `local`; a trap lives in a subshell
# so it cannot outlive its function; scripts run under `set -euo pipefail`;
# a failure prints one line, "SCRIPT: STEP failed: WHY (log: FILE)", after
# stopping what that step started.

# The script's name, for messages; each script may set it before sourcing.
: "${script:=$(basename "$0")}"

# The cache of built and downloaded tools (documented in the README).
cache_root=${COORD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coord}

log() { echo "$script: $*" >&2; }

# die STEP WHY [LOG] prints the one line that says what failed and where its
# log is, then exits 1.
die() {
	local step=$1 why=$2 logfile=${3:-}
	if [ -n "$logfile" ]; then
		echo "$script: $step failed: $why (log: $logfile)" >&2
	else
		echo "$script: $step failed: $why" >&2
	fi
	exit 1
}

# free_port prints a free TCP port on 127.0.0.1.
free_port() { free_ports 1; }

# free_ports N prints N distinct free TCP ports on 127.0.0.1, one a line
# (all held at once while chosen, so none repeats). They are picked below
# the kernel's range of ephemeral ports (ip_local_port_range), where the
# source port of an outgoing connection never lands: a stopped member of a
# cluster restarts on its old ports, and the many connections the tests
# open would otherwise take one of them now and then (a Consul member failed
# to restart so: "address already in use"). A port can still be taken by
# another process before the server binds it: starters retry with new ports
# when the server says so (bind_lost).
free_ports() {
	python3 -c '
import random, socket, sys
n = int(sys.argv[1])
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
socks = []
candidates = list(range(10000, low)) if low > 11000 else []
random.shuffle(candidates)
for port in candidates:
    if len(socks) == n:
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    socks.append(s)
while len(socks) < n:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
' "$1" 2>/dev/null || {
		local i
		for i in $(seq 1 "$1"); do echo $((20000 + (RANDOM % 2000) * 10 + i)); done
	}
}

# bind_lost LOG OFFSET: the server whose output went to LOG (from byte
# OFFSET on) exited because a port it was given was taken meanwhile.
bind_lost() {
	tail -c +"$(($2 + 1))" "$1" 2>/dev/null | grep -qi 'address already in use'
}

# size FILE prints FILE's size in bytes (0 when it does not exist).
size() { if [ -f "$1" ]; then wc -c <"$1"; else echo 0; fi; }

# stop_pidfile FILE stops the process whose pid FILE holds (TERM, then KILL
# after 5s) and removes FILE.
stop_pidfile() {
	[ -f "$1" ] || return 0
	local pid
	pid=$(cat "$1")
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		local _
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
}

# crash_pidfile PIDFILE kills the process in PIDFILE at once (SIGKILL: no
# shutdown of its own, as a crash or a power cut of its process), waits
# until it is gone and removes PIDFILE.
crash_pidfile() {
	[ -f "$1" ] || return 0
	local pid _
	pid=$(cat "$1")
	if [ -n "$pid" ]; then
		kill -9 "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$1"
}

# apt_install LOG PACKAGE... installs Debian packages, their output in LOG.
# COORD_APT_GET names another apt-get (the scripts' own tests use a stand-in).
apt_install() {
	local logfile=$1
	shift
	local apt=${COORD_APT_GET:-apt-get} sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	mkdir -p "$(dirname "$logfile")"
	log "installing Debian's $* package (log: $logfile)"
	{
		$sudo "$apt" update -qq &&
			DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo "$apt" install -y -qq --no-install-recommends "$@"
	} >"$logfile" 2>&1 || return 1
}
