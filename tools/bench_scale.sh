#!/usr/bin/env bash
# make bench-scale: the size targets of the performance issue, cairnd and
# etcd (/usr/bin/etcd) side by side in one run, with the same tools:
#   - load SCALE_KEYS keys (default 1,000,000) of 256-byte values with
#     64-put txns; report load time, server RSS after the load and the data
#     directory's size on disk;
#   - restart the member on that data and time from exec to the first
#     linearizable read answered (and the RSS just after);
#   - SCALE_WATCHERS watchers (default 100,000: 100 streams x 1000) on one
#     prefix, then SCALE_PUTS puts of new keys under it; report the server's
#     RSS with every watcher open, the put-to-event latency over all watchers
#     (p50/p99), per put the time until its last watcher had it (p50, max)
#     and cairn-bench's own CPU (if it nears the run's duration the
#     client, not the server, is what was measured).
# Prints a table with cairnd/etcd ratios. Never fails on a figure; exits 1
# if a server does not start. BENCH_SUMMARY=FILE also appends every
# measurement, one a line, to FILE (tools/bench_vs_etcd.sh's targets table).
set -u
. "$(dirname "$0")/test_lib.sh"
keys=${SCALE_KEYS:-1000000}
watch_streams=${SCALE_WATCH_STREAMS:-100}
watchers=${SCALE_WATCHERS:-100000}
puts=${SCALE_PUTS:-20}
per_stream=$(((watchers + watch_streams - 1) / watch_streams))
txns=$(((keys + 63) / 64))
results=$tmp/results
: >"$results"

rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# private memory: RSS without the file pages mapped (LMDB's and bbolt's maps
# of the data file are page cache, shared and reclaimable)
anon_kb() { awk '/RssAnon/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ms() { date +%s%3N; }

# start_on KIND DIR PORT PEER: starts a member on an existing or new data dir.
start_on() {
	local bin=$BUILD/cairnd
	[ "$1" = etcd ] && bin=/usr/bin/etcd
	ETCD_UNSUPPORTED_ARCH=amd64 "$bin" --name default --data-dir "$2" \
		--listen-client-urls "http://127.0.0.1:$3" --advertise-client-urls "http://127.0.0.1:$3" \
		--listen-peer-urls "http://127.0.0.1:$4" --initial-advertise-peer-urls "http://127.0.0.1:$4" \
		--initial-cluster "default=http://127.0.0.1:$4" --quota-backend-bytes 8589934592 \
		>>"$2.log" 2>&1 &
	server_pid=$!
	pids+=("$server_pid")
}

# first_read EP: polls a linearizable get of the first key until it answers.
first_read() {
	for _ in $(seq 6000); do
		"$CTL" --endpoints="$1" --dial-timeout=100ms --command-timeout=1s get 0000000000 \
			--print-value-only 2>/dev/null | grep -q . && return 0
		sleep 0.01
	done
	return 1
}

for kind in cairnd etcd; do
	if [ "$kind" = etcd ] && [ ! -x /usr/bin/etcd ]; then
		echo "etcd not installed: cairnd only"
		continue
	fi
	port=$(free_port)
	peer=$(free_port)
	ep=127.0.0.1:$port
	dir=$tmp/$kind
	start_on "$kind" "$dir" "$port" "$peer"
	up=0
	for _ in $(seq 300); do
		"$CTL" --endpoints="$ep" --dial-timeout=200ms endpoint health >/dev/null 2>&1 &&
			up=1 && break
		sleep 0.05
	done
	if [ "$up" = 0 ]; then
		echo "server $kind did not become healthy"
		tail -20 "$dir.log"
		exit 1
	fi
	echo "== $kind (pid $server_pid, $ep): loading $keys keys"
	t0=$(now_ms)
	line=$("$BUILD/cairn-bench" --endpoints="$ep" --server-pid="$server_pid" txn-put --txn-ops 64 \
		--total "$txns" --clients 16 --conns 4 --key-size 10 --key-space-size "$keys" \
		--sequential-keys --val-size 256 --quiet 2>&1 | grep '^result:')
	t1=$(now_ms)
	echo "  load: ${line#result: }"
	echo "$kind load_s $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100))" >>"$results"
	echo "$kind rss_loaded_kb $(rss_kb "$server_pid")" >>"$results"
	echo "$kind anon_loaded_kb $(anon_kb "$server_pid")" >>"$results"
	echo "$kind disk_kb $(du -sk "$dir" | cut -f1)" >>"$results"
	# counted after the RSS reading: the count reads every key
	got=$("$CTL" --endpoints="$ep" get "" --prefix --count-only --write-out=fields 2>/dev/null |
		awk -F' : ' '/"Count"/{print $2}')
	echo "$kind keys ${got:-0}" >>"$results"

	kill -TERM "$server_pid"
	wait "$server_pid" 2>/dev/null
	sync
	t0=$(now_ms)
	start_on "$kind" "$dir" "$port" "$peer"
	if first_read "$ep"; then
		t1=$(now_ms)
		echo "$kind restart_ms $((t1 - t0))" >>"$results"
	else
		echo "$kind restart_ms -1" >>"$results"
	fi
	echo "$kind rss_restarted_kb $(rss_kb "$server_pid")" >>"$results"
	echo "$kind anon_restarted_kb $(anon_kb "$server_pid")" >>"$results"

	echo "== $kind: $((per_stream * watch_streams)) watchers, $puts puts"
	line=$("$BUILD/cairn-bench" --endpoints="$ep" --server-pid="$server_pid" watch-latency \
		--conns 10 --streams "$watch_streams" --watchers-per-stream "$per_stream" \
		--put-total "$puts" --put-rate 2 --val-size 256 --watch-prefix --quiet 2>&1 |
		grep '^result:')
	echo "  watch: ${line#result: }"
	echo "$kind watch ${line#result: }" >>"$results"
	kill "$server_pid"
	wait "$server_pid" 2>/dev/null
done

if [ -n "${BENCH_SUMMARY:-}" ]; then
	echo "scale config keys=$keys watchers=$((per_stream * watch_streams)) puts=$puts" \
		>>"$BENCH_SUMMARY"
	sed "s/^/scale /" "$results" >>"$BENCH_SUMMARY"
fi

/usr/bin/python3 - "$results" <<'PY'
import sys
v = {}
for line in open(sys.argv[1]):
    kind, name, rest = line.split(" ", 2)
    if name == "watch":
        kv = dict(f.split("=", 1) for f in rest.split())
        v[(kind, "watch_p50_ms")] = float(kv.get("p50_ms", -1))
        v[(kind, "watch_p99_ms")] = float(kv.get("p99_ms", -1))
        v[(kind, "watch_events")] = float(kv.get("ops", -1))
        v[(kind, "rss_watchers_mib")] = float(kv.get("rss_mib", -1))
        v[(kind, "watch_server_cpu_s")] = float(kv.get("cpu_s", -1))
        v[(kind, "watch_bench_cpu_s")] = float(kv.get("bench_cpu_s", -1))
        v[(kind, "watch_secs")] = float(kv.get("secs", -1))
        v[(kind, "watch_all_p50_ms")] = float(kv.get("all_p50_ms", -1))
        v[(kind, "watch_all_max_ms")] = float(kv.get("all_max_ms", -1))
    else:
        v[(kind, name)] = float(rest)
rows = [("keys loaded", "keys", 1, "%.0f"), ("load time (s)", "load_s", 1, "%.1f"),
        ("RSS after load (MiB)", "rss_loaded_kb", 1024, "%.1f"),
        ("  of it private (RssAnon, MiB)", "anon_loaded_kb", 1024, "%.1f"),
        ("data dir on disk (MiB)", "disk_kb", 1024, "%.1f"),
        ("restart to first read (ms)", "restart_ms", 1, "%.0f"),
        ("RSS after restart (MiB)", "rss_restarted_kb", 1024, "%.1f"),
        ("  of it private (RssAnon, MiB)", "anon_restarted_kb", 1024, "%.1f"),
        ("RSS with watchers (MiB)", "rss_watchers_mib", 1, "%.1f"),
        ("watch events received", "watch_events", 1, "%.0f"),
        ("put -> event p50 (ms)", "watch_p50_ms", 1, "%.1f"),
        ("put -> event p99 (ms)", "watch_p99_ms", 1, "%.1f"),
        ("put -> last watcher p50 (ms)", "watch_all_p50_ms", 1, "%.1f"),
        ("put -> last watcher max (ms)", "watch_all_max_ms", 1, "%.1f"),
        ("watch run wall time (s)", "watch_secs", 1, "%.1f"),
        ("  server CPU in it (s)", "watch_server_cpu_s", 1, "%.1f"),
        ("  cairn-bench CPU in it (s)", "watch_bench_cpu_s", 1, "%.1f")]
print("\n| %-30s | %12s | %12s | %8s |" % ("measure", "cairnd", "etcd", "c/e"))
print("|%s|%s|%s|%s|" % ("-" * 32, "-" * 14, "-" * 14, "-" * 10))
for label, key, div, fmt in rows:
    c, e = v.get(("cairnd", key)), v.get(("etcd", key))
    cs = fmt % (c / div) if c is not None else "-"
    es = fmt % (e / div) if e is not None else "-"
    r = "%.2f" % (c / e) if c is not None and e not in (None, 0) and c >= 0 and e > 0 else "-"
    print("| %-30s | %12s | %12s | %8s |" % (label, cs, es, r))
PY
