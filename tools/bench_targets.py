#!/usr/bin/python3
"""The performance targets of the issue, judged from the measurements that
tools/bench.sh and tools/bench_scale.sh append to BENCH_SUMMARY (run by
tools/bench_vs_etcd.sh): one table of target, threshold, cairnd's figure,
etcd's figure, the ratio and "met" / "MISSED" ("no data" where a figure is
missing, e.g. etcd not installed or a benchmark not run).

Input lines (one measurement each):
  bench MEMBERS KIND NAME REP k=v ...    a cairn-bench result line
  bench MEMBERS fsync REP k=v ...        cairn-bench fsync beside put-1c
  bench MEMBERS KIND rss_end 0 KB        (unused here)
  scale config keys=N watchers=N puts=N  bench_scale.sh's sizes
  scale KIND NAME VALUE                  a bench_scale.sh figure
  scale KIND watch k=v ...               its watch-latency result line

Relative targets are judged on the median of the per-repetition ratios
(cairnd's run and etcd's run of the same repetition were made one right
after the other, under the same conditions); absolute ones on cairnd's
figure. Always exits 0 when the file could be read."""
import math
import sys
from statistics import median

bench, fsync, scale, config = {}, {}, {}, {}


def kv(words):
    return dict(w.split("=", 1) for w in words if "=" in w)


for line in open(sys.argv[1]):
    w = line.split()
    if len(w) < 3:
        continue
    if w[0] == "bench" and len(w) >= 4:
        members = int(w[1])
        if w[2] == "fsync":
            fsync[(members, w[3])] = kv(w[4:])
        elif w[3] != "rss_end" and len(w) >= 5:
            bench.setdefault((members, w[3]), {}).setdefault(w[4], {})[w[2]] = kv(w[5:])
    elif w[0] == "scale":
        if w[1] == "config":
            config.update({k: int(v) for k, v in kv(w[2:]).items()})
        elif w[2] == "watch":
            scale.setdefault(w[1], {}).update({"watch_" + k: v for k, v in kv(w[3:]).items()})
        elif len(w) == 4:
            scale.setdefault(w[1], {})[w[2]] = w[3]


def num(x):
    """a measured figure, or None (missing, unparsable or cairn-bench's -1)"""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v >= 0 else None


def rfmt(x):
    """three significant digits, at least two decimals: 0.251 is not
    printed as 0.25 beside a limit of 0.25 it missed"""
    if x <= 0:
        return "%.2f" % x
    return "%.*f" % (max(2, 2 - math.floor(math.log10(x))), x)


def rrange(v):
    """the median of the ratios, with their range if there are several"""
    if len(v) == 1:
        return rfmt(v[0])
    return "%s [%s-%s]" % (rfmt(median(v)), rfmt(min(v)), rfmt(max(v)))


def judge(x, op, limit):
    if x is None:
        return "no data"
    ok = {">=": x >= limit, "<=": x <= limit, "<": x < limit}[op]
    return "met" if ok else "MISSED"


rows, notes = [], {}  # notes: a dict for its order without duplicates


def bench_row(target, members, name, field, unit, op, limit):
    """a relative target on one cairn-bench figure: cairnd/etcd op limit"""
    reps = bench.get((members, name), {}).values()

    def fig(kind):
        v = [num(r[kind].get(field)) for r in reps if kind in r]
        v = [x for x in v if x is not None]
        return unit % median(v) if v else "-"

    ratios = []
    for r in reps:
        if "cairnd" in r and "etcd" in r:
            c, e = num(r["cairnd"].get(field)), num(r["etcd"].get(field))
            if c is not None and e:
                ratios.append(c / e)
    errs = {k: sum(int(num(r[k].get("errors")) or 0) for r in reps if k in r)
            for k in ("cairnd", "etcd")}
    for k, n in errs.items():
        if n:
            notes["%s %s on %d member(s): %d errors" % (k, name, members, n)] = 1
    rows.append([target, "c/e %s %g" % (op, limit), fig("cairnd"), fig("etcd"),
                 rrange(ratios) if ratios else "-",
                 judge(median(ratios) if ratios else None, op, limit)])


def scale_fig(kind, key, div=1.0):
    v = num(scale.get(kind, {}).get(key))
    return None if v is None else v / div


def scale_row(target, key, unit, op, limit, div=1.0, absolute=False, failed=None):
    """a bench_scale.sh figure: relative (cairnd/etcd op limit) or, with
    absolute, cairnd's own figure op limit (the ratio shown for reference).
    failed: what a figure of -1 means (bench_scale.sh's "never happened"),
    shown instead of it; cairnd's is then a miss, not a lack of data."""
    c, e = scale_fig("cairnd", key, div), scale_fig("etcd", key, div)
    ratio = c / e if c is not None and e else None
    if absolute:
        thr, judged = "cairnd %s %g%s" % (op, limit, unit.split("f", 1)[1]), c
    else:
        thr, judged = "c/e %s %g" % (op, limit), ratio

    def fig(kind, x):
        if x is not None:
            return unit % x
        return failed if failed and scale.get(kind, {}).get(key) == "-1" else "-"

    result = judge(judged, op, limit)
    if fig("cairnd", c) == failed:
        result = "MISSED"
    rows.append([target, thr, fig("cairnd", c), fig("etcd", e),
                 "-" if ratio is None else rfmt(ratio), result])


# 1. put-1000c throughput and p99, on 1 member and on 3
for m in (1, 3):
    bench_row("put-1000c throughput, %d member%s (256 B values)" % (m, "s" * (m > 1)),
              m, "put-1000c", "rps", "%.0f/s", ">=", 3)
    bench_row("put-1000c p99 latency, %d member%s" % (m, "s" * (m > 1)),
              m, "put-1000c", "p99_ms", "%.1f ms", "<=", 0.5)

# 2. single-client put p50 against one fsync of the data directory's disk
one = bench.get((1, "put-1c"), {})
per = {"cairnd": [], "etcd": []}
p50 = {"cairnd": [], "etcd": []}
f50 = []
for rep, f in fsync.items():
    if rep[0] != 1 or not num(f.get("p50_ms")):
        continue
    fs = num(f["p50_ms"])
    f50.append(fs)
    for k in per:
        x = num(one.get(rep[1], {}).get(k, {}).get("p50_ms"))
        if x is not None:
            per[k].append(x / fs)
            p50[k].append(x)


def fs_fig(k):
    if not per[k]:
        return "-"
    return "%.2f ms = %sx fsync" % (median(p50[k]), rfmt(median(per[k])))


rows.append(["put-1c p50 latency within 1.5x of one fsync", "c/fsync <= 1.5", fs_fig("cairnd"),
             fs_fig("etcd"), "c/fsync " + rrange(per["cairnd"]) if per["cairnd"] else "-",
             judge(median(per["cairnd"]) if per["cairnd"] else None, "<=", 1.5)])
if f50:
    notes["fsync p50 (4 KiB write + fdatasync, beside each put-1c run): %.3f ms%s"
                 % (median(f50), " [%.3f-%.3f]" % (min(f50), max(f50)) if len(f50) > 1 else "")] = 1

# 3. range throughput
for name, what in (("range-l-1000c", "linearizable"), ("range-s-1000c", "serializable")):
    bench_row("%s throughput (%s)" % (name, what), 1, name, "rps", "%.0f/s", ">=", 3)

# 4. server CPU per operation
for m, name in ((1, "put-1000c"), (3, "put-1000c"), (1, "range-l-1000c"), (1, "range-s-1000c")):
    bench_row("server CPU per op, %s, %d member%s" % (name, m, "s" * (m > 1)),
              m, name, "cpu_us_per_op", "%.1f us", "<=", 0.2)

# 5. memory, and the put reaching every watcher
keys = scale_fig("cairnd", "keys")
ktext = "%s keys" % ("{:,}".format(int(keys)) if keys is not None else "?")
if keys is not None and scale_fig("etcd", "keys") not in (None, keys):
    notes["keys loaded differ: cairnd %d, etcd %d" % (keys, scale_fig("etcd", "keys"))] = 1
if config.get("keys") and keys is not None and keys != config["keys"]:
    notes["cairnd loaded %d of the %d keys asked for" % (keys, config["keys"])] = 1
scale_row("RSS after loading %s of 256 B" % ktext, "rss_loaded_kb", "%.1f MiB", "<=", 0.25,
          div=1024)
scale_row("  private RSS (RssAnon) after loading %s" % ktext, "anon_loaded_kb", "%.1f MiB",
          "<=", 0.25, div=1024)
wtext = "{:,} watchers".format(config["watchers"]) if "watchers" in config else "the watchers"
scale_row("RSS with %s on one prefix" % wtext, "watch_rss_mib", "%.1f MiB", "<=", 0.2)
scale_row("put -> event p99 over %s" % wtext, "watch_p99_ms", "%.1f ms", "<", 100,
          absolute=True)
for k in ("cairnd", "etcd"):
    ev, am = scale_fig(k, "watch_ops"), scale_fig(k, "watch_all_max_ms")
    if ev is None:
        continue
    want = config.get("watchers", 0) * config.get("puts", 0)
    notes["%s: %d watch events of %s expected, put -> last watcher max %s ms"
          % (k, ev, want or "?", "-" if am is None else "%.1f" % am)] = 1

# 6. restart, 7. disk
scale_row("restart with %s to first linearizable read" % ktext, "restart_ms", "%.0f ms", "<",
          1000, absolute=True, failed="never read")
scale_row("data dir on disk with %s" % ktext, "disk_kb", "%.1f MiB", "<=", 1, div=1024)

hdr = ["target", "threshold", "cairnd", "etcd", "ratio [min-max]", "result"]
w = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
print("performance targets (issue 8), cairnd vs etcd")
print()
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)).rstrip())
print("  ".join("-" * x for x in w))
for r in rows:
    print("  ".join(x.ljust(w[i]) if i in (0, 1) else x.rjust(w[i])
                    for i, x in enumerate(r)).rstrip())
print()
print("ratio: cairnd/etcd, the median of the per-repetition ratios [their range]; figures:")
print("medians over the repetitions; relative targets are judged on the median ratio,")
print("absolute ones (\"cairnd < ...\") on cairnd's figure.")
for n in notes:
    print("  " + n)
met = sum(r[-1] == "met" for r in rows)
print("%d of %d targets met, %d missed, %d without data" % (
    met, len(rows), sum(r[-1] == "MISSED" for r in rows), sum(r[-1] == "no data" for r in rows)))
