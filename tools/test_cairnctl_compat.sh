#!/usr/bin/env bash
# cairnctl and etcdctl print the same against the same member: a set of
# commands in simple, json, table and fields formats, errors and exit codes,
# run against a cairnd and against a real etcd. Only what must differ
# between two invocations is normalised: the health check's timing, a
# lease's remaining TTL, and the header revision of writes (each tool's
# write gets its own revision).
set -u
. "$(dirname "$0")/test_lib.sh"
export ETCDCTL_API=3
[ -x /usr/bin/etcdctl ] || { echo "etcdctl not installed"; exit 77; }

# same NAME ARGS...: runs both tools, compares stdout, the Error line and exit code.
same() {
	local name=$1
	shift
	local a b ra rb
	a=$(etcdctl --endpoints="$ep" "$@" 2>"$tmp/e.err")
	ra=$?
	b=$("$CTL" --endpoints="$ep" "$@" 2>"$tmp/c.err")
	rb=$?
	check "$kind: $name" "$a|$(grep -E '^(Error|command )|watch was|is (un)?healthy' "$tmp/e.err" | sed -E 's/took = .*/took = T/')|rc=$ra" \
		"$b|$(grep -E '^(Error|command )|watch was|is (un)?healthy' "$tmp/c.err" | sed -E 's/took = .*/took = T/')|rc=$rb"
}
# same_norm SED NAME ARGS...: like same, stdout normalised with SED on both.
same_norm() {
	local sed_expr=$1 name=$2
	shift 2
	local a b
	a=$(etcdctl --endpoints="$ep" "$@" 2>/dev/null | sed -E "$sed_expr")
	b=$("$CTL" --endpoints="$ep" "$@" 2>/dev/null | sed -E "$sed_expr")
	check "$kind: $name" "$a" "$b"
}
# same_write NAME KEY ARGS...: a write on KEY, which is reset (deleted and
# put as "v0") before each tool runs so both see the same state; the
# revisions that each tool's own write creates are normalised.
same_write() {
	local name=$1 key=$2
	shift 2
	local a b n='s/"revision":[0-9]+,/"revision":R,/; s/"(mod|create)_revision":[0-9]+/"\1_revision":M/g'
	etcdctl --endpoints="$ep" del "$key" >/dev/null
	etcdctl --endpoints="$ep" put "$key" v0 >/dev/null
	a=$(etcdctl --endpoints="$ep" "$@" 2>&1 | sed -E "$n")
	etcdctl --endpoints="$ep" del "$key" >/dev/null
	etcdctl --endpoints="$ep" put "$key" v0 >/dev/null
	b=$("$CTL" --endpoints="$ep" "$@" 2>&1 | sed -E "$n")
	check "$kind: $name" "$a" "$b"
}
# same_stdin INPUT NAME ARGS...
same_stdin() {
	local input=$1 name=$2
	shift 2
	local a b
	a=$(printf '%b' "$input" | etcdctl --endpoints="$ep" "$@" 2>&1 | grep -v '"level"')
	b=$(printf '%b' "$input" | "$CTL" --endpoints="$ep" "$@" 2>&1)
	check "$kind: $name" "$a" "$b"
}

# same_watch_i NAME PAUSE FIRST THEN ARGS...: `watch -i ARGS` given the
# lines FIRST, then after PAUSE seconds THEN, then EOF after another PAUSE;
# stdout (progress revisions and JSON revisions normalised), stderr and exit
# code. The sessions only read, so both tools run at once.
same_watch_i() {
	local name=$1 pause=$2 first=$3 then=$4
	shift 4
	local n='s/^progress notify: [0-9]+$/progress notify: N/; s/"revision":[0-9]+/"revision":R/g; s/"raft_term":[0-9]+/"raft_term":T/g'
	{ printf '%b' "$first"; sleep "$pause"; printf '%b' "$then"; sleep "$pause"; } |
		etcdctl --endpoints="$ep" "$@" watch -i >"$tmp/e.out" 2>"$tmp/e.err" &
	local epid=$! ra rb
	rb=$({ printf '%b' "$first"; sleep "$pause"; printf '%b' "$then"; sleep "$pause"; } |
		"$CTL" --endpoints="$ep" "$@" watch -i >"$tmp/c.out" 2>"$tmp/c.err"
		echo $?)
	wait $epid
	ra=$?
	local a b
	a=$(sed -E "$n" "$tmp/e.out")
	b=$(sed -E "$n" "$tmp/c.out")
	check "$kind: $name" "$a|$(cat "$tmp/e.err")|rc=$ra" "$b|$(cat "$tmp/c.err")|rc=$rb"
}

run_set() {
	kind=$1
	start_server "$kind" || return 1
	local e="etcdctl --endpoints=$ep"
	$e put foo bar >/dev/null
	$e put foo bar2 >/dev/null
	$e put foo2 baz >/dev/null
	$e put fop 'needs "escaping" <&>' >/dev/null
	$e put bin $'\x01\x7f\xc3\xa9' >/dev/null
	local rev lid
	rev=$($e get foo -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"]["revision"])')
	lid=$($e lease grant 600 | awk '{print $2}')
	$e put lk lv --lease="$lid" >/dev/null

	for fmt in simple json; do
		same "get $fmt" get foo -w $fmt
		same "get all $fmt" get "" --prefix -w $fmt
		same "get --keys-only --limit $fmt" get f --prefix --keys-only --limit 1 -w $fmt
		same "get --rev $fmt" get foo --rev=2 -w $fmt
		same "get sorted $fmt" get f --prefix --sort-by=MODIFY --order=DESCEND -w $fmt
		same "get range $fmt" get foo fop -w $fmt
		same "get missing $fmt" get nope -w $fmt
		same "del missing $fmt" del nope -w $fmt
		same "member list $fmt" member list -w $fmt
		same "alarm list $fmt" alarm list -w $fmt
		same "endpoint hashkv $fmt" endpoint hashkv -w $fmt
		same "lease list $fmt" lease list -w $fmt
		same "lease keep-alive $fmt" lease keep-alive --once "$lid" -w $fmt
		same_norm 's/remaining\([0-9]+s\)/remaining(N)/; s/"ttl":[0-9]+/"ttl":N/' \
			"lease timetolive $fmt" lease timetolive "$lid" --keys -w $fmt
		same_stdin 'value("foo") = "bar2"\n\nget foo\nget f --prefix --limit 1\n\nget nope\n\n' \
			"txn read-only $fmt" txn -w $fmt
		same_stdin 'value("foo") = "nope"\n\nget foo\n\nget fop --keys-only\n\n' \
			"txn failure $fmt" txn -w $fmt
		same_write "put $fmt" "p-$fmt" put "p-$fmt" v1 --prev-kv -w $fmt
		same_write "del $fmt" "d-$fmt" del "d-$fmt" --prev-kv -w $fmt
	done
	same "get fields" get "" --prefix -w fields
	same "endpoint status fields" endpoint status -w fields
	same "endpoint hashkv fields" endpoint hashkv -w fields
	same "get --hex" get bin --hex
	same "get --print-value-only" get f --prefix --print-value-only
	same "endpoint status" endpoint status
	same "endpoint status json" endpoint status -w json
	same "member list table" member list -w table
	same "endpoint status table" endpoint status -w table
	same "endpoint hashkv table" endpoint hashkv -w table
	same "endpoint hashkv --rev" endpoint hashkv --rev="$rev"
	same "endpoint health" endpoint health
	same_norm 's/"took":"[^"]*"/"took":"T"/' "endpoint health json" endpoint health -w json
	same_norm 's/[0-9.]+(ms|µs|s) +\|/T |/; s/-+/-/g; s/  +/ /g' "endpoint health table" endpoint health -w table
	local a b
	a=$(timeout 1.5 etcdctl --endpoints="$ep" watch f --prefix --rev=1 --prev-kv 2>/dev/null)
	b=$(timeout 1.5 "$CTL" --endpoints="$ep" watch f --prefix --rev=1 --prev-kv 2>/dev/null)
	check "$kind: watch --rev --prefix --prev-kv" "$a" "$b"
	a=$(timeout 1.5 etcdctl --endpoints="$ep" watch f --prefix --rev=1 -w json 2>/dev/null)
	b=$(timeout 1.5 "$CTL" --endpoints="$ep" watch f --prefix --rev=1 -w json 2>/dev/null)
	check "$kind: watch json" "$a" "$b"
	# watch -i: lines from stdin (kept open a while: EOF ends the session
	# with exit 3 at once, as in etcdctl); events replayed from a revision
	# so that they do not depend on when the watch is made
	local wr
	wr=$(($($e put iw1 a -w json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["header"]["revision"])')))
	$e put iw1 b >/dev/null
	$e del iw1 >/dev/null
	same_watch_i "watch -i" 0.8 "\nbogus\nwatch\nwatch a b --prefix\nwatch iw1 --rev=$wr --prev-kv\n" "progress\n"
	same_watch_i "watch -i json" 0.8 "watch iw1 --rev=$wr\n" "progress\n" -w json
	same_watch_i "watch -i two watchers" 0.8 "watch iw2\nwatch iw3 --prefix\n" "progress\n"
	same_watch_i "watch -i bad flag" 0 "watch iw1 --bogus\n" ""
	same_watch_i "watch -i no key" 0 "watch --prefix\n" ""
	same_watch_i "watch -i separator" 0 "watch iw1 --\n" ""
	# watch -- command: run per event with ETCD_WATCH_* set; a failing
	# command ends the watch (which ends these)
	same "watch exec" watch iw1 --rev="$wr" -- sh -c 'echo "$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"; exit 3'
	same "watch exec not found" watch iw1 --rev="$wr" -- no-such-command x
	same "watch exec separator" watch iw1 --
	# (double quotes: etcdctl's argify cuts a 'single-quoted' argument to
	# the number of arguments on the line, a bug cairnctl does not copy)
	# shellcheck disable=SC2016
	local xline='watch iw1 --rev=WR -- sh -c "echo $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY"\n'
	same_watch_i "watch -i exec" 0.8 "${xline/WR/$wr}" ""
	same "watch -i EOF" watch -i
	same "watch range_end and --prefix" watch a b --prefix
	same "watch no key" watch
	# a dead endpoint (a second --endpoints appends to the first, as
	# pflag's StringSlice does): the per-endpoint commands report it, the
	# others use another endpoint
	local two="--endpoints=127.0.0.1:$(free_port),$ep"
	same "endpoint hashkv, a dead endpoint" endpoint hashkv "$two" --dial-timeout=500ms
	same "defrag, a dead endpoint" defrag "$two" --dial-timeout=500ms
	same "get, a dead endpoint" get foo "$two"
	same "put empty key" put '' x
	same "get bad consistency" get foo --consistency=x
	same "get --prefix --from-key" get foo --prefix --from-key
	same "lease revoke bad id" lease revoke zz
	same "lease timetolive missing" lease timetolive 1234
	same "lease keep-alive missing" lease keep-alive --once 1234
	a=$(etcdctl --endpoints="$ep" compaction "$rev" 2>&1)
	b=$("$CTL" --endpoints="$ep" compaction "$((rev + 1))" 2>&1)
	check "$kind: compaction" "${a/$rev/N}" "${b/$((rev + 1))/N}"
	same "compaction again" compaction "$rev"
	same "get compacted" get foo --rev=1
	same "watch compacted" watch foo --rev=1
	same "alarm disarm" alarm disarm
	local lid2
	lid2=$($e lease grant 600 | awk '{print $2}')
	a=$(etcdctl --endpoints="$ep" lease revoke "$lid" 2>&1)
	b=$("$CTL" --endpoints="$ep" lease revoke "$lid2" 2>&1)
	check "$kind: lease revoke" "${a/$lid/L}" "${b/$lid2/L}"
	same "lease timetolive expired" lease timetolive "$lid"
	same "lease timetolive expired json" lease timetolive "$lid" -w json
}

run_set cairnd
# The same set against etcd itself checks the expectations, not cairn
# (COMPAT_ETCD=0 skips it).
if [ "${COMPAT_ETCD:-1}" = 1 ] && [ -x /usr/bin/etcd ]; then
	run_set etcd
fi
finish
