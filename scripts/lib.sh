# lib.sh: helpers shared by zk.sh and consul.sh (sourced, not run).

# free_port prints a free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

# stop_pidfile FILE stops the process whose pid FILE holds (TERM, then KILL
# after 5s) and removes FILE.
stop_pidfile() {
	[ -f "$1" ] || return 0
	local pid; pid=$(cat "$1")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$1"
}
