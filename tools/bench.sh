#!/usr/bin/env bash
# make bench: the standard cairn-bench set against a fresh cairnd and, with
# the same tool in the same run, a fresh etcd (/usr/bin/etcd), then one
# table: throughput, p50/p99 latency and server CPU per operation for both,
# with cairnd/etcd ratios. Also the disk's fsync latency on the filesystem
# of the data directories (what one durable batch costs), measured beside
# each single-client put run.
# Never fails on a timing. BENCH_QUICK=1 for a shorter run; BENCH_SCALE=N
# multiplies the request counts; BENCH_REPEAT=N runs each benchmark N times
# (default 3); BENCH_ONLY=REGEX runs the benchmarks whose
# name matches (e.g. BENCH_ONLY='1000c' for the 1000 clients / 100
# connections put and range set); BENCH_MEMBERS=3 runs 3-member clusters.
# BENCH_SUMMARY=FILE also appends every measurement, one a line, to FILE for
# tools/bench_vs_etcd.sh's targets table (see tools/bench_targets.py).
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
	"put-1000c|put --clients 1000 --conns 100 --total $(n 30000) --key-space-size 10000 --val-size 256"
	"txn-put-16c|txn-put --clients 16 --conns 4 --total $(n 2000) --txn-ops 4 --key-space-size 100000 --sequential-keys --val-size 256"
	"range-l-16c|range 0000000001 --clients 16 --conns 4 --total $(n 6000)"
	"range-s-16c|range 0000000001 --clients 16 --conns 4 --total $(n 10000) --consistency s"
	"range-l-1000c|range 0000000001 --clients 1000 --conns 100 --total $(n 60000)"
	"range-s-1000c|range 0000000001 --clients 1000 --conns 100 --total $(n 60000) --consistency s"
	"range-prefix-s|range 0000000 0000001 --clients 8 --conns 4 --total $(n 300) --consistency s"
	"keepalive-16c|lease-keepalive --clients 16 --conns 4 --total $(n 10000)"
	"watch-latency|watch-latency --streams 4 --watchers-per-stream 5 --put-total $(n 200) --put-rate 200"
)

results=$tmp/results
: >"$results"
kinds=(cairnd)
if [ -x /usr/bin/etcd ]; then
	kinds+=(etcd)
else
	echo "etcd not installed: cairnd only"
fi
# Both servers run side by side and every benchmark runs on one right after
# the other (BENCH_REPEAT times, 3 by default): on a shared machine the disk
# and the CPUs change speed from one minute to the next, and a ratio is only
# meaningful between runs made under the same conditions.
# BENCH_MEMBERS=3: a 3-member cluster of each, the clients spread over
# every member's endpoint (as etcd's benchmark --endpoints does), server CPU
# summed over the members.
members=${BENCH_MEMBERS:-1}
declare -A eps spids mpids
for kind in "${kinds[@]}"; do
	if [ "$members" -gt 1 ]; then
		start_cluster "$kind" "$members" || exit 1
		server_pid=${cluster_pids[0]}
		mpids[$kind]="${cluster_pids[*]}"
	else
		start_server "$kind" || exit 1
		mpids[$kind]=$server_pid
	fi
	eps[$kind]=$ep
	spids[$kind]=$server_pid
	echo "== $kind (pids ${mpids[$kind]}, $ep)"
	# Keys for the range benchmarks: 1000 sequential keys.
	"$BUILD/cairn-bench" --endpoints="$ep" put --total 1000 --clients 16 --key-size 10 \
		--key-space-size 1000 --sequential-keys --val-size 256 --quiet >/dev/null
done
repeat=${BENCH_REPEAT:-3}
for entry in "${set_[@]}"; do
	name=${entry%%|*}
	args=${entry#*|}
	[[ "$name" =~ ${BENCH_ONLY:-.} ]] || continue
	for rep in $(seq "$repeat"); do
		for kind in "${kinds[@]}"; do
			# shellcheck disable=SC2086
			t0=$(cpu_ticks ${mpids[$kind]})
			# shellcheck disable=SC2086
			line=$("$BUILD/cairn-bench" --endpoints="${eps[$kind]}" \
				--server-pid="${spids[$kind]}" --key-size 10 $args --quiet 2>"$tmp/err" |
				grep '^result:')
			if [ "$members" -gt 1 ]; then
				# shellcheck disable=SC2086
				t1=$(cpu_ticks ${mpids[$kind]})
				line=$(echo "$line" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" '{
					for (i = 1; i <= NF; i++) if ($i ~ /^ops=/) ops = substr($i, 5)
					for (i = 1; i <= NF; i++) {
						if ($i ~ /^cpu_s=/) $i = sprintf("cpu_s=%.3f", t / hz)
						if ($i ~ /^cpu_us_per_op=/ && ops > 0)
							$i = sprintf("cpu_us_per_op=%.1f", t / hz * 1e6 / ops)
					}
					print }')
			fi
			echo "  $name #$rep $kind: ${line#result: }"
			echo "$kind $name $rep ${line#result: }" >>"$results"
		done
		if [ "$name" = put-1c ]; then
			fs=$("$BUILD/cairn-bench" fsync --dir "$tmp" --total "$(n 200)" --quiet |
				grep '^result:')
			echo "  fsync #$rep: ${fs#result: }"
			echo "fsync $rep ${fs#result: }" >>"$results"
		fi
	done
done
for kind in "${kinds[@]}"; do
	rss=0
	for p in ${mpids[$kind]}; do
		rss=$((rss + $(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
	done
	echo "$kind rss_end 0 $rss" >>"$results"
	for p in ${mpids[$kind]}; do
		kill "$p"
		wait "$p" 2>/dev/null
	done
done

# The raw per-repetition lines, not the medians: the targets table pairs
# cairnd's and etcd's runs of the same repetition, as the table below does.
if [ -n "${BENCH_SUMMARY:-}" ]; then
	sed "s/^/bench $members /" "$results" >>"$BENCH_SUMMARY"
fi

/usr/bin/python3 - "$results" <<'PY'
import sys
from statistics import median
rows, rss, fs = {}, {}, {}
for line in open(sys.argv[1]):
    w = line.split()
    if w[0] == "fsync":
        fs[w[1]] = dict(x.split("=", 1) for x in w[2:])
        continue
    if w[1] == "rss_end":
        rss[w[0]] = int(w[3]) / 1024.0
        continue
    r = rows.setdefault(w[1], {}).setdefault(w[2], {})
    r[w[0]] = dict(x.split("=", 1) for x in w[3:])

def num(d, k):
    try:
        v = float(d.get(k, "-"))
        return v if v >= 0 else None
    except ValueError:
        return None

def med(reps, kind, k):
    v = [num(r[kind], k) for r in reps if kind in r]
    v = [x for x in v if x is not None]
    return median(v) if v else None

def ratios(reps, k):
    v = []
    for r in reps:
        if "cairnd" in r and "etcd" in r:
            a, b = num(r["cairnd"], k), num(r["etcd"], k)
            if a is not None and b:
                v.append(a / b)
    return v

def fmt(x, p=1):
    return "-" if x is None else "%.*f" % (p, x)

def rfmt(v):
    # the median of the paired (same repetition) ratios, and their range
    if not v:
        return "-"
    if len(v) == 1:
        return "%.2f" % v[0]
    return "%.2f [%.2f-%.2f]" % (median(v), min(v), max(v))

hdr = ["benchmark", "cairnd/s", "etcd/s", "ratio [min-max]", "p50 ms c/e", "p50 ratio",
       "p99 ms c/e", "p99 ratio", "cpu us/op c/e", "cpu ratio", "errors c/e"]
out = []
for name, byrep in rows.items():
    reps = list(byrep.values())
    g = lambda kind, k, p=1: fmt(med(reps, kind, k), p)
    errs = lambda kind: "%d" % sum(int(num(r[kind], "errors") or 0) for r in reps if kind in r)
    out.append([name, g("cairnd", "rps"), g("etcd", "rps"), rfmt(ratios(reps, "rps")),
                "%s / %s" % (g("cairnd", "p50_ms", 2), g("etcd", "p50_ms", 2)),
                rfmt(ratios(reps, "p50_ms")),
                "%s / %s" % (g("cairnd", "p99_ms", 2), g("etcd", "p99_ms", 2)),
                rfmt(ratios(reps, "p99_ms")),
                "%s / %s" % (g("cairnd", "cpu_us_per_op"), g("etcd", "cpu_us_per_op")),
                rfmt(ratios(reps, "cpu_us_per_op")),
                "%s / %s" % (errs("cairnd"), errs("etcd"))])
w = [max(len(str(x[i])) for x in out + [hdr]) for i in range(len(hdr))]
print()
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
print("  ".join("-" * w[i] for i in range(len(hdr))))
for row in out:
    print("  ".join(str(x).rjust(w[i]) if i else str(x).ljust(w[i]) for i, x in enumerate(row)))
print()
print("figures: medians over the repetitions; ratio = cairnd / etcd, the median of the")
print("per-repetition ratios with their range (throughput: higher is better for cairnd;")
print("latency and cpu: lower is better)")
print("server RSS at end: cairnd %.1f MiB, etcd %.1f MiB" % (rss.get("cairnd", 0), rss.get("etcd", 0)))
if fs:
    f50 = [float(f["p50_ms"]) for f in fs.values()]
    f99 = [float(f["p99_ms"]) for f in fs.values()]
    print("disk fsync (4 KiB write + fdatasync), beside each put-1c run: p50 %.3f ms "
          "[%.3f-%.3f], p99 %.3f ms" % (median(f50), min(f50), max(f50), median(f99)))
    one = rows.get("put-1c", {})
    for k in ("cairnd", "etcd"):
        v = [num(one[rep][k], "p50_ms") / float(f["p50_ms"]) for rep, f in fs.items()
             if rep in one and k in one[rep] and float(f["p50_ms"]) > 0 and
             num(one[rep][k], "p50_ms") is not None]
        if v:
            print("  put-1c p50 / fsync p50: %s %s" % (k, rfmt(v)))
PY
