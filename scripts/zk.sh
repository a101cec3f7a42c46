#!/usr/bin/env bash
# zk.sh: a throw-away ZooKeeper server for tests, from Debian's zookeeper package.
#
#   scripts/zk.sh install        install the zookeeper package when it is missing
#   scripts/zk.sh start DIR      start a standalone server with its config and data
#                                in DIR, on a free loopback port; print host:port
#   scripts/zk.sh stop DIR       stop the server started in DIR
#   scripts/zk.sh restart DIR    stop the server started in DIR and start it again
#                                on the same port with the same data (the
#                                session and data survive, as on a real restart)
#   scripts/zk.sh version DIR    print the version of the server started in DIR
#   scripts/zk.sh ensemble DIR N start an ensemble of N servers (DIR/m0 ...), all on
#                                loopback; print their host:port, comma-separated
#   scripts/zk.sh stop DIR/mI    stop member I of the ensemble in DIR (SIGTERM;
#   scripts/zk.sh restart DIR/mI crash kills it), or start it again (restart of a stopped one)
#   scripts/zk.sh crash DIR      kill the server in DIR (SIGKILL: it does not shut
#                                down; restart starts it again)
#   scripts/zk.sh leader DIR     print the index of the ensemble's leader
#
# When DIR/peers exists before `ensemble`, its lines "I J QPORT EPORT" say
# that member I reaches member J at 127.0.0.1:QPORT (quorum) and :EPORT
# (election) instead of at J's own ports: a test puts a proxy per pair of
# members there to cut them apart. Each member's own ports are in
# DIR/mJ/quorum.addr and DIR/mJ/election.addr, written before it starts.
#   scripts/zk.sh stop DIR       stop every member, when DIR holds an ensemble
#
# When DIR/tls holds ca.pem, server.pem and server-key.pem (a PKCS#8 key),
# the server also listens for TLS clients (ZooKeeper's secure client port,
# with Netty), and DIR/zk.secure holds its host:port; a client must then
# present a certificate signed by ca.pem.
#
# No system service is used or touched; nothing is written outside DIR (the
# package install logs to DIR/install.log, or to the cache when run alone).
# COORD_ZK_JAR names the server's jar (default Debian's); COORD_APT_GET another
# apt-get. The scripts' own tests set both to run the cold path.
# COORD_ZK_LOG_LEVEL is the servers' log level in DIR/zookeeper.log (WARN).
set -euo pipefail
script=zk.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

ZK_JAR=${COORD_ZK_JAR:-/usr/share/java/zookeeper.jar}

# The server logs through SLF4J; without a binding on the class path it logs
# nothing at all (not even why it exited). Debian's zookeeper package brings
# the log4j 1.2 binding, which writes DIR/zookeeper.log. Its jar's class
# path also leaves out netty-codec, which the Netty connection factory (TLS)
# needs.
ZK_CP=$ZK_JAR
for jar in /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar /usr/share/java/netty-codec.jar; do
	[ -f "$jar" ] && ZK_CP=$ZK_CP:$jar
done

installed() { [ -f "$ZK_JAR" ] && command -v java >/dev/null; }

# install [LOG] installs Debian's zookeeper package unless it is there.
install() {
	installed && return 0
	local logfile=${1:-$cache_root/zookeeper-install.log}
	apt_install "$logfile" zookeeper || die "install" "apt-get install zookeeper failed" "$logfile"
	installed || die "install" "the zookeeper package is installed but $ZK_JAR or java is missing" "$logfile"
}

# send PORT WORD sends one of ZooKeeper's four-letter words and prints the answer.
send() {
	local port=$1 word=$2
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	printf '%s' "$word" >&3
	timeout 2 cat <&3 || true
	exec 3<&- 3>&-
}

start() {
	local dir=${1:?usage: zk.sh start DIR}
	mkdir -p "$dir/data"
	dir=$(cd "$dir" && pwd)
	install "$dir/install.log"
	local attempt rc port ports
	for attempt in 1 2 3 4 5; do
		rc=0
		mapfile -t ports < <(free_ports 2)
		port=${ports[0]}
		configure "$dir" "$port" "${ports[1]}"
		launch "$dir" "$port" start "$attempt" || rc=$?
		[ "$rc" = 75 ] || return "$rc"
		log "port $port was taken before the server bound it; trying another"
	done
	die start "the server found its port taken 5 times running" "$(why "$dir")"
}

# ensemble DIR N starts N servers that form one ensemble, each in DIR/mI
# with its own client, quorum and election ports, and waits until every one
# serves (which needs a quorum of them up: they start together).
ensemble() {
	local dir=${1:?usage: zk.sh ensemble DIR N} n=${2:?usage: zk.sh ensemble DIR N}
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die ensemble "N must be a whole number of servers, not $n"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	install "$dir/install.log"
	local attempt i ports servers addrs
	for attempt in 1 2 3 4 5; do
		mapfile -t ports < <(free_ports $((3 * n)))
		for ((i = 0; i < n; i++)); do
			rm -rf "$dir/m$i"
			mkdir -p "$dir/m$i/data"
			echo $((i + 1)) >"$dir/m$i/data/myid"
			configure "$dir/m$i" "${ports[3 * i]}" 0
			echo "127.0.0.1:${ports[3 * i + 1]}" >"$dir/m$i/quorum.addr"
			echo "127.0.0.1:${ports[3 * i + 2]}" >"$dir/m$i/election.addr"
			echo "127.0.0.1:${ports[3 * i]}" >"$dir/m$i/zk.addr"
		done
		for ((i = 0; i < n; i++)); do
			peers "$dir" "$i" "$n" "${ports[@]}" >>"$dir/m$i/zoo.cfg" || die ensemble "$dir/peers does not say how member $i reaches every other member"
		done
		echo "$n" >"$dir/zk.ensemble"
		for ((i = 0; i < n; i++)); do
			spawn "$dir/m$i"
		done
		addrs=""
		local rc=0
		for ((i = 0; i < n; i++)); do
			# In a subshell: a member that fails stops the others below.
			(await "$dir/m$i" "${ports[3 * i]}" ensemble "$attempt" >/dev/null) || { rc=$?; break; }
			addrs+="${addrs:+,}127.0.0.1:${ports[3 * i]}"
		done
		if [ "$rc" = 0 ]; then
			echo "$addrs"
			return
		fi
		stop "$dir"
		[ "$rc" = 75 ] || return "$rc"
		log "a port was taken before a server bound it; trying others"
	done
	die ensemble "the servers found a port taken 5 times running"
}

# peers DIR I N PORTS... prints member I's server.J lines: J's own quorum
# and election ports (PORTS, three per member: client, quorum, election),
# or those DIR/peers gives for the pair I J.
peers() {
	local dir=$1 i=$2 n=$3 j q e line
	shift 3
	local ports=("$@")
	for ((j = 0; j < n; j++)); do
		q=${ports[3 * j + 1]} e=${ports[3 * j + 2]}
		if [ -f "$dir/peers" ] && [ "$j" != "$i" ]; then
			line=$(awk -v i="$i" -v j="$j" '$1 == i && $2 == j { print $3, $4 }' "$dir/peers")
			[ -n "$line" ] || return 1
			q=${line% *} e=${line#* }
		fi
		echo "server.$((j + 1))=127.0.0.1:$q:$e"
	done
}

# leader DIR prints the index of the member of the ensemble in DIR that
# says it leads (none while the members elect one).
leader() {
	local dir=${1:?usage: zk.sh leader DIR} n i
	n=$(cat "$dir/zk.ensemble" 2>/dev/null) || die leader "no ensemble was started in $dir"
	for ((i = 0; i < n; i++)); do
		[ -f "$dir/m$i/zk.pid" ] || continue
		if [[ "$(send "$(port_of "$dir/m$i")" srvr 2>/dev/null)" == *"Mode: leader"* ]]; then
			echo "$i"
			return
		fi
	done
	die leader "no member of the ensemble in $dir leads now"
}

port_of() { local addr; addr=$(cat "$1/zk.addr"); echo "${addr##*:}"; }

# configure DIR PORT SECUREPORT writes the server's configuration in DIR
# (SECUREPORT is used when DIR/tls holds the certificates).
configure() {
	local dir=$1 port=$2 secure=$3
	rm -f "$dir/zk.secure"
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
	if [ -f "$dir/tls/ca.pem" ] && [ -f "$dir/tls/server.pem" ] && [ -f "$dir/tls/server-key.pem" ]; then
		# ZooKeeper's PEM key store is the key and its certificate in one file.
		cat "$dir/tls/server-key.pem" "$dir/tls/server.pem" >"$dir/tls/keystore.pem"
		cat >>"$dir/zoo.cfg" <<CFG
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
secureClientPort=$secure
secureClientPortAddress=127.0.0.1
ssl.keyStore.location=$dir/tls/keystore.pem
ssl.keyStore.type=PEM
ssl.trustStore.location=$dir/tls/ca.pem
ssl.trustStore.type=PEM
ssl.clientAuth=need
CFG
		echo "127.0.0.1:$secure" >"$dir/zk.secure"
	fi
	{
		echo "log4j.rootLogger=${COORD_ZK_LOG_LEVEL:-WARN}, FILE"
		cat <<'L4J'
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d %p [%t] %c: %m%n
L4J
	} >"$dir/log4j.properties"
}

# launch DIR PORT STEP [ATTEMPT] runs the server configured in DIR and waits
# until it serves; STEP names what failed in the message. With ATTEMPT (a
# start, which can pick another port), a server that exits because its port
# was taken meanwhile makes it return 75 instead of failing.
launch() {
	spawn "$1"
	await "$@"
}

# spawn DIR runs the server configured in DIR in the background.
spawn() {
	local dir=$1
	size "$dir/stdout.log" >"$dir/stdout.offset"
	size "$dir/zookeeper.log" >"$dir/zookeeper.offset"
	java -Dzookeeper.log.dir="$dir" -Dlog4j.configuration="file:$dir/log4j.properties" \
		-Xmx256m -cp "$dir:$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
		>>"$dir/stdout.log" 2>&1 &
	echo $! >"$dir/zk.pid"
}

# await DIR PORT STEP [ATTEMPT] waits until the server spawned in DIR serves
# (see launch).
await() {
	local dir=$1 port=$2 step=$3 attempt=${4:-}
	local logfile=$dir/stdout.log offset zkoffset
	offset=$(cat "$dir/stdout.offset")
	zkoffset=$(cat "$dir/zookeeper.offset")
	local _
	for _ in $(seq 1 300); do
		# srvr answers with the version only once the server serves clients
		# (ruok says imok before that).
		# (No `| grep -q`: it exits at the match, and under pipefail the
		# writer's SIGPIPE would make a ready server look unready.)
		if [[ "$(send "$port" srvr 2>/dev/null)" == "Zookeeper version:"* ]]; then
			echo "127.0.0.1:$port" >"$dir/zk.addr"
			echo "127.0.0.1:$port"
			return
		fi
		if ! kill -0 "$(cat "$dir/zk.pid")" 2>/dev/null; then
			rm -f "$dir/zk.pid"
			if [ -n "$attempt" ] && { bind_lost "$logfile" "$offset" || bind_lost "$dir/zookeeper.log" "$zkoffset"; }; then
				return 75
			fi
			die "$step" "the zookeeper server exited" "$(why "$dir")"
		fi
		sleep 0.1
	done
	stop_pidfile "$dir/zk.pid"
	die "$step" "the zookeeper server did not serve within 30s; stopped it" "$(why "$dir")"
}

# why DIR names the log that says why the server in DIR failed: its own
# (zookeeper.log) once it wrote one, else the JVM's output.
why() {
	if [ -s "$1/zookeeper.log" ]; then echo "$1/zookeeper.log"; else echo "$1/stdout.log"; fi
}

stop() {
	local dir=${1:?usage: zk.sh stop DIR} i
	if [ -f "$dir/zk.ensemble" ]; then
		for ((i = 0; i < $(cat "$dir/zk.ensemble"); i++)); do
			stop_pidfile "$dir/m$i/zk.pid"
		done
		return
	fi
	stop_pidfile "$dir/zk.pid"
}

crash() { crash_pidfile "${1:?usage: zk.sh crash DIR}/zk.pid"; }

restart() {
	local dir=${1:?usage: zk.sh restart DIR} addr
	[ -f "$dir/zoo.cfg" ] && [ -f "$dir/zk.addr" ] || die "restart" "no server was started in $dir"
	dir=$(cd "$dir" && pwd)
	addr=$(cat "$dir/zk.addr")
	stop_pidfile "$dir/zk.pid"
	# A member of an ensemble serves once it has rejoined a quorum.
	launch "$dir" "${addr##*:}" restart
}

# version DIR prints "ZooKeeper X.Y.Z" of the server running in DIR.
version() {
	local dir=${1:?usage: zk.sh version DIR} addr
	addr=$(cat "$dir/zk.addr")
	send "${addr##*:}" srvr | sed -n 's/^Zookeeper version: \([^-,]*\).*/ZooKeeper \1/p'
}

case "${1:-}" in
install) install ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
crash) crash "${2:-}" ;;
restart) restart "${2:-}" ;;
version) version "${2:-}" ;;
ensemble) ensemble "${2:-}" "${3:-}" ;;
leader) leader "${2:-}" ;;
*)
	echo "usage: $0 install | start DIR | stop DIR | crash DIR | restart DIR | version DIR | ensemble DIR N | leader DIR" >&2
	exit 2
	;;
esac
