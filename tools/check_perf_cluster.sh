#!/usr/bin/env bash
# make check-perf-cluster: `etcdctl check perf --load=${LOAD:-s}` against a
# 3-member cairn cluster and then a 3-member etcd cluster on this machine
# (free loopback ports, fresh data dirs), with every endpoint given to
# etcdctl; prints etcdctl's verdict and the three servers' CPU seconds and
# summed RSS for each. Never fails on a figure.
set -u
. "$(dirname "$0")/test_lib.sh"
load=${LOAD:-s}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}

cluster_stats() { # pids...: cpu seconds and RSS MiB summed over the members
	local cpu=0 rss=0 t r
	for p in "$@"; do
		t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
		r=$(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		cpu=$((cpu + t))
		rss=$((rss + r))
	done
	echo "$((cpu / $(getconf CLK_TCK))) $((rss / 1024))"
}

for kind in cairnd etcd; do
	bin=$BUILD/cairnd
	[ "$kind" = etcd ] && bin=/usr/bin/etcd
	[ -x "$bin" ] || { echo "$bin missing: skipped"; continue; }
	ic="" eps="" cports=() pports=() mpids=()
	for i in 1 2 3; do
		cports+=("$(free_port)")
		pports+=("$(free_port)")
		ic="${ic:+$ic,}m$i=http://127.0.0.1:${pports[$((i - 1))]}"
		eps="${eps:+$eps,}127.0.0.1:${cports[$((i - 1))]}"
	done
	for i in 1 2 3; do
		c=${cports[$((i - 1))]} p=${pports[$((i - 1))]}
		ETCD_UNSUPPORTED_ARCH=amd64 "$bin" --name "m$i" --data-dir "$tmp/$kind-m$i" \
			--listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
			--listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
			--initial-cluster "$ic" --initial-cluster-state new \
			--initial-cluster-token "perf-$kind" >"$tmp/$kind-m$i.log" 2>&1 &
		mpids+=($!)
		pids+=($!)
	done
	for _ in $(seq 200); do
		"$ETCDCTL" --endpoints="$eps" --dial-timeout=200ms endpoint health >/dev/null 2>&1 && break
		sleep 0.1
	done
	echo "== $kind: 3 members ($eps)"
	read -r cpu0 _ < <(cluster_stats "${mpids[@]}")
	"$ETCDCTL" --endpoints="$eps" check perf --load="$load" 2>&1 | tr '\r' '\n' |
		grep -v '^ *[0-9]* / [0-9]*' | grep -v '^$'
	read -r cpu1 rss < <(cluster_stats "${mpids[@]}")
	echo "  servers: CPU $((cpu1 - cpu0)) s over the check, RSS $rss MiB summed over the 3 members"
	for p in "${mpids[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
done
exit 0
