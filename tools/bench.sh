#!/usr/bin/env bash
# make bench: the standard cairn-bench set against a fresh cairnd and then,
# with the same tool in the same run, against a fresh etcd (/usr/bin/etcd),
# then one table: throughput, p50/p99 latency and server CPU per operation
# for both, with cairnd/etcd ratios. Also the disk's fsync latency on the
# filesystem of the data directories (what one durable batch costs).
# Never fails on a timing. BENCH_QUICK=1 for a shorter run; BENCH_SCALE=N
# multiplies the request counts.
set -u
. "$(dirname "$0")/test_lib.sh"
scale=${BENCH_SCALE:-1}
[ "${BENCH_QUICK:-0}" = 1 ] && scale=0.25
n() { /usr/bin/python3 -c "print(max(1, int($1 * $scale)))"; }

# name | cairn-bench arguments
set_=(
	"put-1c|put --clients 1 --total $(n 500) --key-space-size 10000 --val-size 256"
	"put-16c|put --clients 16 --conns 4 --total $(n 4000) --key-space-size 10000 --val-size 256"
	"put-64c|put --clients 64 --conns 8 --total $(n 6000) --key-space-size 10000 --val-size 256"
	"txn-put-16c|txn-put --clients 16 --conns 4 --total $(n 2000) --txn-ops 4 --key-space-size 100000 --sequential-keys --val-size 256"
	"range-l-16c|range 0000000001 --clients 16 --conns 4 --total $(n 6000)"
	"range-s-16c|range 0000000001 --clients 16 --conns 4 --total $(n 10000) --consistency s"
	"range-prefix-s|range 0000000 0000001 --clients 8 --conns 4 --total $(n 300) --consistency s"
	"keepalive-16c|lease-keepalive --clients 16 --conns 4 --total $(n 10000)"
	"watch-latency|watch-latency --streams 4 --watchers-per-stream 5 --put-total $(n 200) --put-rate 200"
)

results=$tmp/results
: >"$results"
for kind in cairnd etcd; do
	if [ "$kind" = etcd ] && [ ! -x /usr/bin/etcd ]; then
		echo "etcd not installed: cairnd only"
		continue
	fi
	start_server "$kind" || exit 1
	echo "== $kind (pid $server_pid, $ep)"
	# Keys for the range benchmarks: 1000 sequential keys.
	"$BUILD/cairn-bench" --endpoints="$ep" put --total 1000 --clients 16 --key-size 10 \
		--key-space-size 1000 --sequential-keys --val-size 256 --quiet >/dev/null
	for entry in "${set_[@]}"; do
		name=${entry%%|*}
		args=${entry#*|}
		# shellcheck disable=SC2086
		line=$("$BUILD/cairn-bench" --endpoints="$ep" --server-pid="$server_pid" --key-size 10 \
			$args --quiet 2>"$tmp/err" | grep '^result:')
		echo "  $name: ${line#result: }"
		echo "$kind $name ${line#result: }" >>"$results"
	done
	rss=$(awk '/VmRSS/{print $2}' "/proc/$server_pid/status" 2>/dev/null)
	echo "$kind rss_end ${rss:-0}" >>"$results"
	kill "$server_pid"
	wait "$server_pid" 2>/dev/null
done
fs=$("$BUILD/cairn-bench" fsync --dir "$tmp" --total "$(n 200)" --quiet | grep '^result:')
echo "fsync ${fs#result: }" >>"$results"

/usr/bin/python3 - "$results" <<'PY'
import sys
rows, rss, fs = {}, {}, None
for line in open(sys.argv[1]):
    w = line.split()
    if w[0] == "fsync":
        fs = dict(x.split("=", 1) for x in w[1:])
        continue
    if w[1] == "rss_end":
        rss[w[0]] = int(w[2]) / 1024.0
        continue
    rows.setdefault(w[1], {})[w[0]] = dict(x.split("=", 1) for x in w[2:])

def ratio(a, b):
    try:
        a, b = float(a), float(b)
        return "%.2f" % (a / b) if b > 0 and a >= 0 else "-"
    except ValueError:
        return "-"

hdr = ["benchmark", "cairnd/s", "etcd/s", "ratio", "p50 ms c/e", "p99 ms c/e",
       "cpu us/op c/e", "cpu ratio", "errors c/e"]
out = []
for name, r in rows.items():
    c, e = r.get("cairnd", {}), r.get("etcd", {})
    g = lambda d, k: d.get(k, "-")
    out.append([name, g(c, "rps"), g(e, "rps"), ratio(g(c, "rps"), g(e, "rps")),
                "%s / %s" % (g(c, "p50_ms"), g(e, "p50_ms")),
                "%s / %s" % (g(c, "p99_ms"), g(e, "p99_ms")),
                "%s / %s" % (g(c, "cpu_us_per_op"), g(e, "cpu_us_per_op")),
                ratio(g(c, "cpu_us_per_op"), g(e, "cpu_us_per_op")),
                "%s / %s" % (g(c, "errors"), g(e, "errors"))])
w = [max(len(str(x[i])) for x in out + [hdr]) for i in range(len(hdr))]
print()
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
print("  ".join("-" * w[i] for i in range(len(hdr))))
for row in out:
    print("  ".join(str(x).rjust(w[i]) if i else str(x).ljust(w[i]) for i, x in enumerate(row)))
print()
print("ratio = cairnd / etcd (throughput: higher is better for cairnd; cpu: lower is better)")
print("server RSS at end: cairnd %.1f MiB, etcd %.1f MiB" % (rss.get("cairnd", 0), rss.get("etcd", 0)))
if fs:
    print("disk fsync (4 KiB write + fdatasync): p50 %s ms, p99 %s ms, %s/s" %
          (fs["p50_ms"], fs["p99_ms"], fs["rps"]))
PY
