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

# start_cluster KIND N: N members of KIND on free loopback ports; sets $ep
# (every member's client endpoint, comma-separated) and $cluster_pids.
start_cluster() {
	local kind=$1 n=$2 bin ic="" i
	local -a cports=() pports=()
	bin=${SERVER_BIN:-$BUILD/cairnd}
	[ "$kind" = etcd ] && bin=/usr/bin/etcd
	for i in $(seq "$n"); do
		cports+=("$(free_port)")
		pports+=("$(free_port)")
		ic="$ic${ic:+,}m$i=http://127.0.0.1:${pports[i - 1]}"
	done
	ep="" cluster_pids=()
	for i in $(seq "$n"); do
		local c=127.0.0.1:${cports[i - 1]}
		ETCD_UNSUPPORTED_ARCH=amd64 "$bin" --name "m$i" --data-dir "$tmp/$kind-m$i" \
			--listen-client-urls "http://$c" --advertise-client-urls "http://$c" \
			--listen-peer-urls "http://127.0.0.1:${pports[i - 1]}" \
			--initial-advertise-peer-urls "http://127.0.0.1:${pports[i - 1]}" \
			--initial-cluster "$ic" --initial-cluster-token "bench-$kind" \
			>"$tmp/$kind-m$i.log" 2>&1 &
		cluster_pids+=("$!")
		pids+=("$!")
		ep="$ep${ep:+,}$c"
	done
	for _ in $(seq 150); do
		"$CTL" --endpoints="$ep" --dial-timeout=200ms put bench-warmup x >/dev/null 2>&1 &&
			return 0
		sleep 0.1
	done
	echo "cluster $kind did not come up"
	tail -5 "$tmp/$kind-m"*.log
	return 1
}

# cpu_ticks PID...: user+system clock ticks summed over the processes.
cpu_ticks() {
	local t=0 p
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
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
