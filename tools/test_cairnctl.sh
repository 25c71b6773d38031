#!/usr/bin/env bash
# cairnctl end-to-end against a real cairnd: every command's output checked
# against the text etcdctl prints (simple, json, table, fields), error
# messages and exit codes included.
set -u
. "$(dirname "$0")/test_lib.sh"
start_server cairnd || exit 1
c() { "$CTL" --endpoints="$ep" "$@"; }
rc() { "$@" >/dev/null 2>&1; echo $?; }
json() { /usr/bin/python3 -c "import json,sys;d=json.load(sys.stdin);print($1)"; }

check "put" "OK" "$(c put foo bar 2>&1)"
check "get" $'foo\nbar' "$(c get foo 2>&1)"
check "put --prev-kv" $'OK\nfoo\nbar' "$(c put foo bar2 --prev-kv 2>&1)"
c put foo2 baz >/dev/null
c put fop x >/dev/null
check "get --prefix" $'foo\nbar2\nfoo2\nbaz' "$(c get foo --prefix 2>&1)"
check "get range" $'foo\nbar2\nfoo2\nbaz' "$(c get foo fop 2>&1)"
check "get --from-key" $'foo\nbar2\nfoo2\nbaz\nfop\nx' "$(c get foo --from-key 2>&1)"
check "get --keys-only" $'foo\n\nfoo2\n\nEND' "$(c get foo --prefix --keys-only 2>&1; echo END)"
check "get --print-value-only" $'bar2\nbaz' "$(c get foo --prefix --print-value-only 2>&1)"
check "get --limit --order --sort-by" $'fop\nx' "$(c get f --prefix --limit 1 --order DESCEND --sort-by KEY 2>&1)"
check "get --hex" $'\\x66\\x6f\\x6f\n\\x62\\x61\\x72\\x32' "$(c get foo --hex 2>&1)"
check "get count json" "3 True" "$(c get f --prefix --limit 1 -w json | json 'd["count"], d["more"]')"
check "get json base64" "Zm9v YmFyMg==" "$(c get foo -w json | json 'd["kvs"][0]["key"], d["kvs"][0]["value"]')"
check "get fields" '"Key" : "foo"' "$(c get foo -w fields | grep '"Key"')"
check "get missing" "" "$(c get nope 2>&1)"
check "get -w table unsupported" "Error: table not supported as output format" "$(c get foo -w table 2>&1)"
check "get -w table exit" "4" "$(rc c get foo -w table)"
check "put from stdin" "OK" "$(printf 'stdin-value' | c put sk 2>&1)"
check "get stdin value" "stdin-value" "$(c get sk --print-value-only 2>&1)"
check "put no args" "Error: put command needs 1 argument and input from stdin or 2 arguments" "$(c put 2>&1)"
check "put no args exit" "128" "$(rc c put)"
check "put empty key" "Error: etcdserver: key is not provided" "$(c put '' x 2>&1)"
check "put empty key exit" "1" "$(rc c put '' x)"
check "del" "1" "$(c del foo2 2>&1)"
check "del --prev-kv" $'1\nfop\nx' "$(c del fop --prev-kv 2>&1)"
check "del missing" "0" "$(c del nope 2>&1)"
rev=$(c get foo -w json | json 'd["header"]["revision"]')
c put foo bar3 >/dev/null
check "get --rev" $'foo\nbar2' "$(c get foo --rev="$rev" 2>&1)"
check "txn success" $'SUCCESS\n\nOK\n\nfoo\nbar3' \
	"$(printf 'value("foo") = "bar3"\n\nput k1 v1\nget foo\n\n\n' | c txn 2>&1)"
check "txn failure" $'FAILURE\n\nOK' \
	"$(printf 'value("foo") = "nope"\n\nput k1 v1\n\nput k2 v2\n\n' | c txn 2>&1)"
check "txn mod compare" "SUCCESS" \
	"$(printf 'mod("foo") > "1"\n\n\n\n' | c txn 2>&1)"
check "txn bad compare" "Error: malformed comparison: bogus" "$(printf 'bogus\n\n\n\n' | c txn 2>&1)"
check "txn json" "True" "$(printf 'version("k2") = "1"\n\nget k2\n\n\n' | c txn -w json | json 'd["succeeded"]')"
check "txn json oneof" "djI=" "$(printf '\nget k2\n\n\n' | c txn -w json | json 'd["responses"][0]["Response"]["ResponseRange"]["kvs"][0]["value"]')"

# watch: live events, then from a past revision, then a compacted one
# (from the next revision, so events are not missed however slow the start)
wrev=$(c get w -w json | json 'd["header"]["revision"] + 1')
c watch w --prefix --prev-kv --rev="$wrev" >"$tmp/watch.out" 2>&1 &
wpid=$!
c put w1 a >/dev/null
c put w1 b >/dev/null
c del w1 >/dev/null
for _ in $(seq 50); do [ "$(wc -l <"$tmp/watch.out")" -ge 13 ] && break; sleep 0.1; done
kill $wpid 2>/dev/null
wait $wpid 2>/dev/null
check "watch --prefix --prev-kv" $'PUT\nw1\na\nPUT\nw1\na\nw1\nb\nDELETE\nw1\nb\nw1\n\nEND' "$(cat "$tmp/watch.out"; echo END)"
check "watch --rev" $'PUT\nfoo\nbar3' "$(timeout 2 "$CTL" --endpoints="$ep" watch foo --rev="$((rev + 1))" 2>&1 | head -3)"
check "watch json" "PUT foo" "$(timeout 2 "$CTL" --endpoints="$ep" watch foo --rev="$((rev + 1))" -w json 2>&1 | head -1 | json '"DELETE" if d["Events"][0].get("type") else "PUT", __import__("base64").b64decode(d["Events"][0]["kv"]["key"]).decode()')"

# lease
lid=$(c lease grant 60 2>&1 | awk '/granted/{print $2}')
check "lease grant" "lease $lid granted with TTL(60s)" "$(c lease timetolive "$lid" >/dev/null; echo "lease $lid granted with TTL(60s)")"
check "lease grant format" "1" "$(c lease grant 30 | grep -cE '^lease [0-9a-f]{16} granted with TTL\(30s\)$')"
c put lk lv --lease="$lid" >/dev/null
check "lease timetolive --keys" "1" "$(c lease timetolive "$lid" --keys 2>&1 | grep -cE "^lease $lid granted with TTL\(60s\), remaining\([0-9]+s\), attached keys\(\[lk\]\)$")"
check "lease list" "1" "$(c lease list 2>&1 | grep -c "^$lid$")"
check "lease list header" "found 2 leases" "$(c lease list 2>&1 | head -1)"
check "lease keep-alive --once" "lease $lid keepalived with TTL(60)" "$(c lease keep-alive --once "$lid" 2>&1)"
check "lease keep-alive json" "60" "$(c lease keep-alive --once "$lid" -w json | json 'd["TTL"]')"
check "lease timetolive json keys" "['bGs=']" "$(c lease timetolive "$lid" --keys -w json | json 'd["keys"]')"
check "lease revoke" "lease $lid revoked" "$(c lease revoke "$lid" 2>&1)"
check "lease key gone" "" "$(c get lk 2>&1)"
check "lease timetolive expired" "lease $lid already expired" "$(c lease timetolive "$lid" 2>&1)"
check "lease revoke missing" "Error: failed to revoke lease (etcdserver: requested lease not found)" "$(c lease revoke "$lid" 2>&1)"
check "lease keep-alive missing" "Error: etcdserver: requested lease not found" "$(c lease keep-alive --once 1234 2>&1)"
check "lease bad id" "128" "$(rc c lease revoke zz)"

# cluster and maintenance
mid=$(c endpoint status -w json | json '"%x" % d[0]["Status"]["header"]["member_id"]')
check "member list" "$mid, started, default, $(grep -o 'http://127.0.0.1:[0-9]*' <<<"$(c member list -w json | json 'd["members"][0]["peerURLs"][0]')"), http://$ep, false" "$(c member list 2>&1)"
check "member list table" "| $mid | started | default |" "$(c member list -w table | sed -n 4p | awk -F'|' '{print "|" $2 "|" $3 "|" $4 "|"}' | sed 's/  */ /g')"
check "endpoint status" "$ep, $mid, " "$(c endpoint status | cut -d, -f1,2), "
check "endpoint status json" "$ep True" "$(c endpoint status -w json | json 'd[0]["Endpoint"], d[0]["Status"]["leader"] == d[0]["Status"]["header"]["member_id"]')"
check "endpoint health" "1" "$(c endpoint health 2>&1 | grep -cE "^$ep is healthy: successfully committed proposal: took = [0-9.]+(ms|µs|s)$")"
check "endpoint health json" "True" "$(c endpoint health -w json | json 'd[0]["health"]')"
check "endpoint health --cluster" "1" "$(c endpoint health --cluster 2>&1 | grep -c "^http://$ep is healthy")"
check "endpoint hashkv" "$ep, " "$(c endpoint hashkv | sed 's/[0-9]*$//')"
check "alarm list" "" "$(c alarm list 2>&1)"
check "alarm disarm" "" "$(c alarm disarm 2>&1)"
crev=$(c get foo -w json | json 'd["header"]["revision"]')
check "compaction" "compacted revision $crev" "$(c compaction "$crev" 2>&1)"
check "get compacted" "Error: etcdserver: mvcc: required revision has been compacted" "$(c get foo --rev=1 2>&1)"
check "compaction again" "Error: etcdserver: mvcc: required revision has been compacted" "$(c compaction 1 2>&1)"
check "watch compacted" $'watch was canceled (etcdserver: mvcc: required revision has been compacted)\nError: watch is canceled by the server' "$(timeout 5 "$CTL" --endpoints="$ep" watch foo --rev=1 2>&1)"
check "watch compacted exit" "5" "$(rc timeout 5 "$CTL" --endpoints="$ep" watch foo --rev=1)"
check "defrag" "Finished defragmenting etcd member[$ep]" "$(c defrag 2>&1)"
check "snapshot save" "Snapshot saved at $tmp/snap.db" "$(c snapshot save "$tmp/snap.db" 2>&1)"
check "snapshot file" "1" "$([ -s "$tmp/snap.db" ] && echo 1)"
srev=$(c get foo -w json | json 'd["header"]["revision"]')
skeys=$(c get "" --prefix --count-only -w json | json 'd["count"]')
check "snapshot status" "$srev, $skeys" "$("$CTL" snapshot status "$tmp/snap.db" | cut -d, -f2,3 | sed 's/^ //')"
check "snapshot status json" "$srev" "$("$CTL" snapshot status "$tmp/snap.db" -w json | json 'd["revision"]')"
check "snapshot restore" "1" "$("$CTL" snapshot restore "$tmp/snap.db" --data-dir "$tmp/restored" 2>/dev/null | grep -c '^restored snapshot')"
check "restored data" "$skeys keys at revision $srev" "$("$CTL" inspect keys --data-dir "$tmp/restored" | tail -1)"
check "restore refuses existing dir" "1" "$(rc "$CTL" snapshot restore "$tmp/snap.db" --data-dir "$tmp/restored")"
# A member started on the restored directory serves the data and applies new
# writes (its raft log starts after the snapshot's applied index).
rport=$(free_port)
rpeer=$(free_port)
"$BUILD/cairnd" --data-dir "$tmp/restored" --listen-client-urls "http://127.0.0.1:$rport" \
	--advertise-client-urls "http://127.0.0.1:$rport" --listen-peer-urls "http://127.0.0.1:$rpeer" \
	--initial-advertise-peer-urls "http://127.0.0.1:$rpeer" \
	--initial-cluster "default=http://127.0.0.1:$rpeer" >"$tmp/restored.log" 2>&1 &
rpid=$!
for _ in $(seq 100); do "$CTL" --endpoints="127.0.0.1:$rport" put restored-key yes >/dev/null 2>&1 && break; sleep 0.1; done
check "restored member takes writes" "yes" "$("$CTL" --endpoints="127.0.0.1:$rport" get restored-key --print-value-only 2>&1)"
check "restored member keeps data" "$((skeys + 1))" "$("$CTL" --endpoints="127.0.0.1:$rport" get "" --prefix --count-only -w json | json 'd["count"]')"
kill $rpid
wait $rpid 2>/dev/null
# A database of several MiB: the snapshot stream has to wait for the client
# to drain it (the server used to stop at 256 KiB and never finish).
for i in $(seq 45); do head -c 100000 /dev/urandom | base64 -w0 | c put "/big/$i" >/dev/null; done
brev=$(c get foo -w json | json 'd["header"]["revision"]')
bkeys=$(c get "" --prefix --count-only -w json | json 'd["count"]')
check "big snapshot save" "Snapshot saved at $tmp/big.db" "$(timeout 30 "$CTL" --endpoints="$ep" snapshot save "$tmp/big.db" 2>&1)"
check "big snapshot status" "$brev, $bkeys" "$("$CTL" snapshot status "$tmp/big.db" 2>&1 | cut -d, -f2,3 | sed 's/^ //')"

# check perf (short): its verdict depends on the machine, its shape and
# clean-up do not
perf=$(c check perf --duration 2 2>&1)
check "check perf lines" "1" "$(grep -cE '^(PASS|FAIL): Throughput' <<<"$perf")"
check "check perf verdict" "1" "$(tail -1 <<<"$perf" | grep -cxE 'PASS|FAIL')"
check "check perf cleans up" "0" "$(c get /etcdctl-check-perf/ --prefix --count-only -w json | json 'd.get("count", 0)')"
c put /etcdctl-check-perf/x y >/dev/null
check "check perf busy prefix" "3" "$(rc c check perf --duration 1)"
c del /etcdctl-check-perf/x >/dev/null
check "check perf bad load" "4" "$(rc c check perf --load huge)"

# globals: environment, timeouts, unreachable endpoint, help
check "CAIRNCTL_ENDPOINTS" $'foo\nbar3' "$(CAIRNCTL_ENDPOINTS=$ep "$CTL" get foo 2>&1)"
check "ETCDCTL_ENDPOINTS" $'foo\nbar3' "$(ETCDCTL_ENDPOINTS=$ep "$CTL" get foo 2>&1)"
check "CAIRNCTL_WRITE_OUT" "1" "$(CAIRNCTL_WRITE_OUT=json c get foo | json 'd["count"]')"
check "unreachable" "Error: context deadline exceeded" "$("$CTL" --endpoints=127.0.0.1:1 --dial-timeout=300ms get foo 2>&1 | grep -v '^rpc: ')"
check "unreachable exit" "1" "$(rc "$CTL" --endpoints=127.0.0.1:1 --dial-timeout=300ms get foo)"
# failover: a dead first endpoint (clientv3's balancer uses the next one)
dead=127.0.0.1:$(free_port)
f() { "$CTL" --endpoints="$dead,$ep" "$@"; }
check "failover put" "OK" "$(f put fo v1 2>&1)"
frev=$(f get fo -w json | json 'd["kvs"][0]["mod_revision"]')
check "failover get" $'fo\nv1' "$(f get fo 2>&1)"
check "failover txn" $'SUCCESS\n\nfo\nv1' "$(printf 'value("fo") = "v1"\n\nget fo\n\n\n' | f txn 2>&1)"
check "failover member list" "$(c member list)" "$(f member list 2>&1)"
check "failover endpoint health --cluster" "1" "$(f endpoint health --cluster 2>&1 | grep -c "^http://$ep is healthy")"
flid=$(f lease grant 60 2>&1 | awk '/granted/{print $2}')
check "failover lease keep-alive" "lease $flid keepalived with TTL(60)" "$(f lease keep-alive --once "$flid" 2>&1)"
check "failover watch" $'PUT\nfo\nv1' "$(timeout 2 "$CTL" --endpoints="$dead,$ep" watch fo --rev="$frev" 2>&1 | head -3)"
check "failover watch -i" $'PUT\nfo\nv1' "$({ echo "watch fo --rev=$frev"; sleep 1; } | "$CTL" --endpoints="$dead,$ep" watch -i 2>/dev/null)"
check "failover no stray output" "" "$(f get fo 2>&1 >/dev/null)"
check "--endpoints twice appends" "$ep, $ep, " "$(c endpoint status --endpoints="$ep" | cut -d, -f1 | tr '\n' ',' | sed 's/,/, /g')"
check "failover all dead" "Error: context deadline exceeded" "$("$CTL" --endpoints="$dead,127.0.0.1:1" --dial-timeout=300ms get fo 2>&1)"
check "failover all dead exit" "1" "$(rc "$CTL" --endpoints="$dead,127.0.0.1:1" --dial-timeout=300ms get fo)"
check "endpoint status per endpoint (no failover)" "Failed to get the status of endpoint $dead (context deadline exceeded)" "$(f endpoint status --dial-timeout=300ms 2>&1 >/dev/null)"
check "unknown flag" "Error: unknown flag: --bogus" "$(c get foo --bogus 2>&1)"
check "unknown command" "1" "$(rc c bogus)"
check "help" "1" "$(c get --help | grep -c -- '--print-value-only')"
# every command (as `cairnctl --help` lists them) has its --help
while IFS= read -r cmd; do
	# shellcheck disable=SC2086
	check "help $cmd" "0 NAME:" "$(rc "$CTL" $cmd --help) $("$CTL" $cmd --help 2>&1 | head -1)"
done < <("$CTL" --help | awk '/^COMMANDS:/{on=1;next} /^$/{on=0} on{sub(/^\t/,""); split($0,a,"  "); print a[1]}')
check "help lists watch -i" "1" "$("$CTL" watch --help | grep -c -- '-i, --interactive')"
# bash completion (tools/cairnctl.bash) reads commands and flags from --help
comp() { bash -c 'source tools/cairnctl.bash; PATH=$PWD/'"$BUILD"':$PATH; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _cairnctl; echo "${COMPREPLY[*]}"' _ "$@"; }
check "completion commands" "lease" "$(comp cairnctl le)"
check "completion subcommands" "grant revoke timetolive list keep-alive" "$(comp cairnctl lease '')"
check "completion flags" "--prefix --print-value-only" "$(comp cairnctl get --pr)"
check "completion member" "add remove update list promote" "$(comp cairnctl member '')"
check "completion move-leader" "move-leader" "$(comp cairnctl mov)"
check "completion endpoint" "health status hashkv" "$(comp cairnctl endpoint '')"
check "completion watch -i" "--interactive" "$(comp cairnctl watch --inter)"
check "completion after global flags" "promote" "$(comp cairnctl --endpoints=x member pro)"
finish
