#!/usr/bin/env bash
# Offline `cairnctl inspect` against the data directory of a cairnd that is
# running (and keeps serving while inspect reads): summary, keys, history,
# raft-log, check; inspect must never block the writer.
set -u
. "$(dirname "$0")/test_lib.sh"
start_server cairnd || exit 1
c() { "$CTL" --endpoints="$ep" "$@"; }
r0=$(c get a -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"].get("revision", 0))')
c put a 1 >/dev/null
c put a 2 >/dev/null
c put b x >/dev/null
c del b >/dev/null
lid=$(c lease grant 600 | awk '{print $2}')
c put l v --lease="$lid" >/dev/null
rev=$(c get a -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"]["revision"])')
mid=$(c endpoint status -w json | /usr/bin/python3 -c 'import json,sys;print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["member_id"])')
i() { "$CTL" inspect "$@" --data-dir "$datadir"; }

out=$(i 2>&1)
check "summary revision" "revision: $rev" "$(grep '^revision:' <<<"$out")"
check "summary keys" "keys: 2" "$(grep '^keys:' <<<"$out")"
check "summary leases" "leases: 1" "$(grep '^leases:' <<<"$out")"
check "summary compact" "compact revision: 0" "$(grep '^compact revision:' <<<"$out")"
check "summary db size" "1" "$(grep -cE '^db size: [1-9][0-9]* bytes' <<<"$out")"
check "summary raft term" "1" "$(grep -cE '^raft term: [1-9]' <<<"$out")"
check "summary member" "1" "$(grep -cE "^  $mid name=default learner=false peers=http://127.0.0.1:[0-9]+ clients=http://$ep$" <<<"$out")"
check "summary applied" "1" "$(grep -cE '^applied index: [1-9]' <<<"$out")"
check "keys" $"a create=$((r0 + 1)) mod=$((r0 + 2)) version=2 lease=0
l create=$rev mod=$rev version=1 lease=$lid
2 keys at revision $rev" "$(i keys 2>&1)"
check "keys --prefix" "a" "$(i keys --prefix a 2>&1 | head -1 | cut -d' ' -f1)"
check "history" "rev=$((r0 + 1)).0 PUT create=$((r0 + 1)) version=1 lease=0 value=1
rev=$((r0 + 2)).0 PUT create=$((r0 + 1)) version=2 lease=0 value=2
2 revisions of a since compact revision 0" "$(i history a 2>&1)"
check "history deleted" "rev=$((r0 + 3)).0 PUT create=$((r0 + 3)) version=1 lease=0 value=x
rev=$((r0 + 4)).0 DELETE" "$(i history b 2>&1 | head -2)"
log=$(i raft-log 2>&1)
check "raft-log put" "1" "$(grep -c 'type=normal .* put key=a value_len=1$' <<<"$log" | sed 's/^2$/1/')"
check "raft-log lease grant" "1" "$(grep -c "lease-grant id=$lid ttl=600" <<<"$log")"
check "raft-log delete" "1" "$(grep -c 'delete key=b' <<<"$log")"
check "raft-log footer" "1" "$(tail -1 <<<"$log" | grep -cE '^[0-9]+ entries shown; log holds')"
check "check" "store check passed" "$(i check 2>&1)"

# While a writer is busy: inspect keeps reading consistent states and the
# writer is never blocked (its puts complete while inspect runs).
"$BUILD/cairn-bench" --endpoints="$ep" put --total 3000 --clients 8 --key-space-size 500 \
	--sequential-keys --quiet >"$tmp/bench.out" 2>&1 &
bpid=$!
ok=1
for _ in 1 2 3 4 5; do
	i check >/dev/null 2>&1 || ok=0
	i >/dev/null 2>&1 || ok=0
done
wait $bpid
check "inspect during load" "1" "$ok"
check "writer not blocked" "1" "$(grep -c 'ops=3000 errors=0' "$tmp/bench.out")"
check "summary after load" "revision: $((rev + 3000))" "$(i 2>&1 | grep '^revision:')"
check "missing dir" "1" "$("$CTL" inspect --data-dir "$tmp/nope" >/dev/null 2>&1; echo $?)"
finish
