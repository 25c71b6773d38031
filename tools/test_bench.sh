#!/usr/bin/env bash
# cairn-bench's counts agree with the server: put --total N advances the
# revision by exactly N, txn-put by N (one revision per txn), range and
# lease-keepalive complete every request; the report has its percentiles
# and finds the server's CPU and RSS through /proc.
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
finish
