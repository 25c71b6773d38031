# test_lib.sh — shared by the tools/ test scripts (sourced, not run):
# start_server KIND (cairnd|etcd) on free loopback ports with a fresh data
# dir, check NAME EXPECTED ACTUAL, and finish (prints the count, exits).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=${BUILD:-build}
CTL=$BUILD/cairnctl
tmp=$(mktemp -d)
pids=()
fails=0
passes=0

free_port() {
	/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# start_server KIND NAME: sets $ep (host:port), $datadir and $server_pid.
start_server() {
	local kind=$1 name=${2:-default}
	local port peer bin
	port=$(free_port)
	peer=$(free_port)
	ep=127.0.0.1:$port
	datadir=$tmp/$kind-$port
	bin=${SERVER_BIN:-$BUILD/cairnd}
	[ "$kind" = etcd ] && bin=/usr/bin/etcd
	ETCD_UNSUPPORTED_ARCH=amd64 "$bin" --name "$name" --data-dir "$datadir" \
		--listen-client-urls "http://$ep" --advertise-client-urls "http://$ep" \
		--listen-peer-urls "http://127.0.0.1:$peer" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "$name=http://127.0.0.1:$peer" >"$tmp/$kind-$port.log" 2>&1 &
	server_pid=$!
	pids+=("$server_pid")
	for _ in $(seq 150); do
		"$CTL" --endpoints="$ep" --dial-timeout=200ms endpoint health >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "server $kind did not become healthy"
	cat "$tmp/$kind-$port.log"
	return 1
}

cleanup() {
	for p in "${pids[@]+"${pids[@]}"}"; do
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

check() { # name, expected, actual
	if [ "$2" == "$3" ]; then
		passes=$((passes + 1))
		echo "ok   $1"
	else
		fails=$((fails + 1))
		echo "FAIL $1"
		diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -20 | sed 's/^/  /'
	fi
}

finish() {
	echo "$passes passed, $fails failed"
	[ $fails -eq 0 ]
	exit $?
}
