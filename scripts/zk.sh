#!/usr/bin/env bash
# zk.sh: a throw-away ZooKeeper server for tests, from Debian's zookeeper package.
#
#   scripts/zk.sh install        install the zookeeper package when it is missing
#   scripts/zk.sh start DIR      start a standalone server with its config and data
#                                in DIR, on a free loopback port; print host:port
#   scripts/zk.sh stop DIR       stop the server started in DIR
#
# No system service is used or touched.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

ZK_JAR=/usr/share/java/zookeeper.jar

log() { echo "zk.sh: $*" >&2; }

install() {
	if [ -f "$ZK_JAR" ] && command -v java >/dev/null; then
		return
	fi
	log "installing Debian's zookeeper package"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq zookeeper >/dev/null
}


# ruok sends ZooKeeper's "are you ok" four-letter word; the answer is imok.
ruok() {
	local port=$1 answer
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	printf ruok >&3
	answer=$(timeout 2 cat <&3 || true)
	exec 3<&- 3>&-
	[ "$answer" = imok ]
}

start() {
	local dir=${1:?usage: zk.sh start DIR}
	install
	mkdir -p "$dir/data"
	dir=$(cd "$dir" && pwd)
	local port; port=$(free_port)
	cat >"$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr,cons
CFG
	cat >"$dir/log4j.properties" <<'L4J'
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d %p [%t] %c: %m%n
L4J
	java -Dzookeeper.log.dir="$dir" -Dlog4j.configuration="file:$dir/log4j.properties" \
		-Xmx256m -cp "$dir:$ZK_JAR" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
		>"$dir/stdout.log" 2>&1 &
	echo $! >"$dir/zk.pid"
	for _ in $(seq 1 300); do
		if ruok "$port" 2>/dev/null; then
			echo "127.0.0.1:$port" >"$dir/zk.addr"
			echo "127.0.0.1:$port"
			return
		fi
		if ! kill -0 "$(cat "$dir/zk.pid")" 2>/dev/null; then
			log "zookeeper exited; its output:"; tail -n 30 "$dir/stdout.log" "$dir/zookeeper.log" >&2 2>/dev/null; exit 1
		fi
		sleep 0.1
	done
	log "zookeeper did not answer within 30s; see $dir"
	exit 1
}

stop() {
	local dir=${1:?usage: zk.sh stop DIR}
	stop_pidfile "$dir/zk.pid"
}

case "${1:-}" in
install) install ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
