#!/usr/bin/env bash
# The real etcdctl (Debian etcd-client) against a real cairnd: put/get/del,
# txn, watch, lease, compaction, snapshot save, endpoint status/health,
# member list, with outputs checked.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
dir=$(mktemp -d)
port=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
peer=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
ep=127.0.0.1:$port
server_bin=${SERVER_BIN:-$BUILD/cairnd}
ETCD_UNSUPPORTED_ARCH=amd64 "$server_bin" --name t --data-dir "$dir/data" --listen-client-urls "http://$ep" \
	--advertise-client-urls "http://$ep" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
	--listen-peer-urls "http://127.0.0.1:$peer" --initial-cluster "t=http://127.0.0.1:$peer" >"$dir/log" 2>&1 &
pid=$!
cleanup() {
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
export ETCDCTL_API=3
ctl() { etcdctl --endpoints="$ep" --command-timeout=5s "$@"; }
for _ in $(seq 100); do ctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

fails=0
check() { # name, expected, actual
	if [ "$2" == "$3" ]; then
		echo "ok   $1"
	else
		echo "FAIL $1"
		echo "  expected: $(printf %q "$2")"
		echo "  actual:   $(printf %q "$3")"
		fails=$((fails + 1))
	fi
}

check "put" "OK" "$(ctl put foo bar 2>&1)"
check "get" $'foo\nbar' "$(ctl get foo 2>&1)"
ctl put foo2 baz >/dev/null
check "get prefix" $'foo\nbar\nfoo2\nbaz' "$(ctl get foo --prefix 2>&1)"
check "get keys-only limit" "foo" "$(ctl get foo --prefix --keys-only --limit 1 2>&1 | sed '/^$/d')"
check "get count json" '2' "$(ctl get foo --prefix --limit 1 -w json 2>&1 | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["count"])')"
check "get missing" "" "$(ctl get nope 2>&1)"
check "del" "1" "$(ctl del foo2 2>&1)"
check "put empty key" "Error: etcdserver: key is not provided" "$(ctl put '' x 2>&1 | grep ^Error)"
rev=$(ctl get foo -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"]["revision"])')
ctl put foo bar2 >/dev/null
check "get at old revision" $'foo\nbar' "$(ctl get foo --rev="$rev" 2>&1)"
check "txn" $'SUCCESS\n\nOK\n\nfoo\nbar2' "$(printf 'value("foo") = "bar2"\n\nput k1 v1\nget foo\n\n\n' | ctl txn 2>&1 | sed 's/[[:space:]]*$//')"
check "txn failure branch" $'FAILURE\n\nOK' "$(printf 'value("foo") = "nope"\n\nput k1 v1\n\nput k2 v2\n\n' | ctl txn 2>&1 | sed 's/[[:space:]]*$//')"

# watch: live events
ctl watch w --prefix >"$dir/watch.out" 2>&1 &
wpid=$!
sleep 0.5
ctl put w1 a >/dev/null
ctl put w2 b >/dev/null
ctl del w1 >/dev/null
sleep 0.5
kill $wpid 2>/dev/null
wait $wpid 2>/dev/null
check "watch" $'PUT\nw1\na\nPUT\nw2\nb\nDELETE\nw1' "$(cat "$dir/watch.out")"
# watch from a past revision
check "watch --rev" $'PUT\nfoo\nbar2' "$(timeout 2 etcdctl --endpoints="$ep" watch foo --rev="$((rev + 1))" 2>&1 | head -3)"

# lease
lid=$(ctl lease grant 60 2>&1 | awk '/granted/{print $2}')
check "lease grant" "1" "$([ -n "$lid" ] && echo 1)"
ctl put lk lv --lease="$lid" >/dev/null
check "lease timetolive keys" "1" "$(ctl lease timetolive "$lid" --keys 2>&1 | grep -c 'attached keys(\[lk\])')"
check "lease list" "1" "$(ctl lease list 2>&1 | grep -c "$lid")"
check "lease keep-alive once" "1" "$(ctl lease keep-alive --once "$lid" 2>&1 | grep -c 'keepalived with TTL(60)')"
check "lease revoke" "lease $lid revoked" "$(ctl lease revoke "$lid" 2>&1)"
check "lease key gone" "" "$(ctl get lk 2>&1)"

# compaction
crev=$(ctl get foo -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"]["revision"])')
check "compaction" "compacted revision $crev" "$(ctl compaction "$crev" 2>&1)"
check "get compacted" "Error: etcdserver: mvcc: required revision has been compacted" "$(ctl get foo --rev=1 2>&1 | grep ^Error)"

# maintenance and cluster
check "endpoint health" "1" "$(ctl endpoint health 2>&1 | grep -c 'is healthy')"
check "endpoint status" "1" "$(ctl endpoint status -w json 2>&1 | /usr/bin/python3 -c 'import json,sys;s=json.load(sys.stdin)[0]["Status"];print(int(s["leader"]==s["header"]["member_id"] and s["dbSize"]>0))')"
check "member list" "1" "$(ctl member list 2>&1 | grep -c ', started, t, http://127.0.0.1:')"
check "alarm list" "" "$(ctl alarm list 2>&1)"
check "defrag" "Finished defragmenting etcd member[$ep]" "$(ctl defrag 2>&1)"
check "snapshot save" "1" "$(ctl snapshot save "$dir/snap.db" 2>&1 | grep -c 'Snapshot saved at')"
check "snapshot size" "1" "$([ -s "$dir/snap.db" ] && echo 1)"
check "hashkv" "1" "$(ctl endpoint hashkv -w json 2>&1 | grep -c '"hash"')"
# A database of several MiB: the snapshot stream outlives the server's
# per-stream send queue and has to resume as the client drains it.
for i in $(seq 40); do head -c 100000 /dev/urandom | base64 -w0 | ctl put "big$i" >/dev/null; done
brev=$(ctl get big1 -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"]["revision"])')
bkeys=$(ctl get "" --from-key --keys-only --limit 1 -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["count"])')
check "big snapshot save" "1" "$(timeout 30 etcdctl --endpoints="$ep" snapshot save "$dir/big.db" 2>&1 | grep -c 'Snapshot saved at')"
# The stream ends with the SHA-256 of everything before it (etcd's trailer).
check "big snapshot sha256 trailer" "1" "$(/usr/bin/python3 -c 'import hashlib,sys
b=open(sys.argv[1],"rb").read()
print(int(len(b)>4<<20 and hashlib.sha256(b[:-32]).digest()==b[-32:]))' "$dir/big.db" 2>&1)"
if [ -z "${SERVER_BIN:-}" ]; then
	# cairnctl reads cairn's snapshot format (etcdctl's status reads bolt).
	bhash=$(ctl endpoint hashkv --rev="$brev" -w json | /usr/bin/python3 -c 'import json,sys;print("%x" % json.load(sys.stdin)[0]["HashKV"]["hash"])')
	check "big snapshot status (hash, revision, keys)" "$bhash, $brev, $bkeys" "$("$BUILD/cairnctl" snapshot status "$dir/big.db" 2>&1 | cut -d, -f1-3)"
fi

# SIGTERM: clean exit 0
kill -TERM $pid
wait $pid
rc=$?
# etcd re-raises SIGTERM (exit 143); cairnd exits 0 after a clean stop.
[ -z "${SERVER_BIN:-}" ] && check "sigterm exit code" "0" "$rc"
if [ $fails -ne 0 ]; then
	echo "--- cairnd log"
	tail -20 "$dir/log"
fi
echo "etcdctl: $fails failed"
[ $fails -eq 0 ]
