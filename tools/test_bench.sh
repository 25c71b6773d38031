#!/usr/bin/env bash
# cairn-bench's counts agree with the server: put --total N advances the
# revision by exactly N, txn-put by N (one revision per txn), range and
# lease-keepalive complete every request; the report has its percentiles
# and finds the server's CPU and RSS through /proc. Also bench.sh's
# BENCH_SUMMARY and make bench-vs-etcd's targets table (bench_targets.py).
set -u
. "$(dirname "$0")/test_lib.sh"
start_server cairnd || exit 1
B="$BUILD/cairn-bench --endpoints=$ep"
revision() {
	"$CTL" --endpoints="$ep" get x -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"].get("revision", 0))'
}
r0=$(revision)
out=$($B put --total 2000 --clients 16 --conns 4 --key-space-size 100 2>&1)
r1=$(revision)
check "put: revision advanced by total" "2000" "$((r1 - r0))"
check "put: result line" "1" "$(grep -c '^result: cmd=put ops=2000 errors=0 ' <<<"$out")"
check "put: percentiles" "1" "$(grep -c '^  99.9% in ' <<<"$out")"
check "put: histogram" "1" "$(grep -c '^Response time histogram:' <<<"$out")"
check "put: server found by port" "1" "$(grep -cE "^Server \(pid $server_pid\):" <<<"$out")"
check "put: server RSS" "1" "$(grep -cE '^  RSS:	[0-9.]+ MiB' <<<"$out")"
check "put: key space" "100" "$("$CTL" --endpoints="$ep" get "" --prefix --count-only -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["count"])')"
out=$($B txn-put --total 300 --txn-ops 3 --clients 4 --key-space-size 100000 --sequential-keys --quiet 2>&1)
r2=$(revision)
check "txn-put: one revision per txn" "300" "$((r2 - r1))"
check "txn-put: keys" "900" "$("$CTL" --endpoints="$ep" get "" --prefix --count-only -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["count"])')"
out=$($B range 00000001 --total 1000 --clients 8 --consistency s --quiet 2>&1)
check "range: all done" "1" "$(grep -c 'ops=1000 errors=0' <<<"$out")"
check "range: no revision" "$r2" "$(revision)"
out=$($B put --total 200 --rate 400 --quiet 2>&1)
secs=$(sed -E 's/.* secs=([0-9.]+) .*/\1/' <<<"$out")
check "put --rate paces" "1" "$(/usr/bin/python3 -c "print(1 if $secs >= 0.45 else 0)")"
out=$($B lease-keepalive --total 500 --clients 4 --quiet 2>&1)
check "lease-keepalive" "1" "$(grep -c 'ops=500 errors=0' <<<"$out")"
out=$($B watch --streams 4 --watchers-per-stream 5 --quiet 2>&1)
check "watch creation" "1" "$(grep -c 'ops=20 errors=0' <<<"$out")"
out=$(timeout 30 $B watch-latency --streams 2 --watchers-per-stream 2 --put-total 20 --put-rate 200 --quiet 2>&1)
check "watch-latency: every event" "1" "$(grep -c 'ops=80 errors=0' <<<"$out")"
check "bad flag" "2" "$($B put --bogus >/dev/null 2>&1; echo $?)"

# make bench-vs-etcd's pieces: a tiny bench.sh run appends its measurements
# to BENCH_SUMMARY (cairnd's put-1c, the fsync beside it) and the targets
# table turns them into figures; the judging is checked on made-up figures.
BENCH_SUMMARY=$tmp/summary BENCH_ONLY='^put-1c$' BENCH_REPEAT=1 BENCH_SCALE=0.1 tools/bench.sh \
	>"$tmp/bench.out" 2>&1
check "bench.sh with BENCH_SUMMARY" "0" "$?"
check "summary: put-1c line" "1" \
	"$(grep -c '^bench 1 cairnd put-1c 1 cmd=put ops=50 errors=0 ' "$tmp/summary")"
check "summary: fsync line" "1" "$(grep -c '^bench 1 fsync 1 cmd=fsync ' "$tmp/summary")"
out=$(/usr/bin/python3 tools/bench_targets.py "$tmp/summary")
check "targets: every row" "17" "$(grep -cE '  (met|MISSED|no data)$' <<<"$out")"
check "targets: put-1c from the run" "1" \
	"$(grep -cE '^put-1c p50 .*[0-9.]+ ms = [0-9.]+x fsync .* (met|MISSED)$' <<<"$out")"
printf '%s\n' \
	"bench 1 cairnd put-1000c 1 cmd=put errors=0 rps=30000 p99_ms=20 cpu_us_per_op=10" \
	"bench 1 etcd put-1000c 1 cmd=put errors=0 rps=10000 p99_ms=50 cpu_us_per_op=60" \
	"bench 1 cairnd put-1000c 2 cmd=put errors=0 rps=20000 p99_ms=30 cpu_us_per_op=10" \
	"bench 1 etcd put-1000c 2 cmd=put errors=0 rps=10000 p99_ms=50 cpu_us_per_op=40" \
	"bench 1 cairnd put-1000c 3 cmd=put errors=0 rps=40000 p99_ms=10 cpu_us_per_op=10" \
	"bench 1 etcd put-1000c 3 cmd=put errors=0 rps=10000 p99_ms=50 cpu_us_per_op=50" \
	"scale config keys=1000 watchers=100 puts=2" \
	"scale cairnd restart_ms 1200" "scale etcd restart_ms 300" \
	"scale cairnd disk_kb 1024" "scale etcd disk_kb 2048" >"$tmp/made-up"
out=$(/usr/bin/python3 tools/bench_targets.py "$tmp/made-up")
last() { # N LINE-PREFIX: the last N words of the row starting so
	grep "^$2" <<<"$out" | awk -v n="$1" '{ s = ""; for (i = NF - n + 1; i <= NF; i++)
		s = s (s == "" ? "" : " ") $i; print s }'
}
check "targets: put-1000c throughput" "30000/s 10000/s 3.00 [2.00-4.00] met" \
	"$(last 5 'put-1000c throughput, 1 member')"
check "targets: put-1000c p99" "0.400 [0.200-0.600] met" "$(last 3 'put-1000c p99 latency, 1 member')"
check "targets: cpu" "0.200 [0.167-0.250] met" "$(last 3 'server CPU per op, put-1000c, 1 member')"
check "targets: restart (absolute)" "1200 ms 300 ms 4.00 MISSED" "$(last 6 'restart with')"
check "targets: disk" "0.500 met" "$(last 2 'data dir on disk')"
check "targets: 3 members without data" "- no data" "$(last 3 'put-1000c throughput, 3 members')"
finish
