#!/usr/bin/env bash
# make bench-vs-etcd: every performance target of the issue against etcd
# (/usr/bin/etcd), measured in one run by the three existing benchmarks:
#   1. tools/bench.sh on one member, the full set (BENCH_ONLY narrows it);
#   2. tools/bench.sh on 3-member clusters, put-1000c only;
#   3. tools/bench_scale.sh (1M keys: RSS, disk, restart; 100k watchers).
# Each prints its own table as usual and appends its measurements to a
# summary file (BENCH_SUMMARY, a temporary file unless set); then
# tools/bench_targets.py prints one table: each target, its threshold,
# cairnd's and etcd's figures, the ratio and whether it was met.
# Never fails on a figure: exits nonzero only if a benchmark did (a server
# that did not start). Passes BENCH_QUICK, BENCH_REPEAT, BENCH_SCALE and
# SCALE_KEYS, SCALE_WATCHERS etc. on, e.g. for a quick run:
#   BENCH_QUICK=1 BENCH_REPEAT=1 SCALE_KEYS=100000 SCALE_WATCHERS=10000 make bench-vs-etcd
set -u
cd "$(dirname "$0")/.." || exit 1
export BUILD=${BUILD:-build}
summary=${BENCH_SUMMARY:-}
if [ -z "$summary" ]; then
	summary=$(mktemp)
	trap 'rm -f "$summary"' EXIT
fi
# the benchmarks run from the repository's root too, but say it once
case $summary in
/*) ;;
*) summary=$PWD/$summary ;;
esac
: >"$summary"
rc=0
echo "### 1 member: tools/bench.sh"
BENCH_SUMMARY=$summary BENCH_MEMBERS=1 tools/bench.sh || rc=1
echo
echo "### 3 members: BENCH_MEMBERS=3 BENCH_ONLY='^put-1000c\$' tools/bench.sh"
BENCH_SUMMARY=$summary BENCH_MEMBERS=3 BENCH_ONLY='^put-1000c$' tools/bench.sh || rc=1
echo
echo "### size targets: tools/bench_scale.sh"
BENCH_SUMMARY=$summary tools/bench_scale.sh || rc=1
echo
/usr/bin/python3 tools/bench_targets.py "$summary" || rc=1
exit $rc
