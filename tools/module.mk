# tools/: cairnctl (the CLI, online and offline inspection), cairn-bench (the
# load generator) and their tests. See DESIGN.md §1.
#
#   make bench            cairn-bench against a fresh cairnd, then etcd (table)
#   make bench-scale      the size targets (below)
#   make bench-vs-etcd    bench on 1 member, bench's put-1000c on 3 members and
#                         bench-scale, then one table of the issue's targets:
#                         threshold, cairnd's and etcd's figures, the ratio and
#                         met/MISSED (tools/bench_vs_etcd.sh, bench_targets.py)
#   BENCH_QUICK=1         a shorter run; BENCH_ONLY=REGEX runs the matching subset;
#                         BENCH_REPEAT=N repetitions (3); BENCH_MEMBERS=3 (bench)
#   a quick bench-vs-etcd: BENCH_QUICK=1 BENCH_REPEAT=1 SCALE_KEYS=100000 \
#                         SCALE_WATCHERS=10000 make bench-vs-etcd

CTL_SRCS := tools/cairnctl.c tools/cairnctl_kv.c tools/cairnctl_cluster.c \
	tools/cairnctl_inspect.c tools/cairnctl_snapshot.c tools/cairnctl_check.c tools/ctl_client.c tools/ctl_json.c
CTL_OBJS := $(CTL_SRCS:%.c=$(BUILD)/%.o)
$(CTL_OBJS): $(BUILD)/proto/internal.pb-c.h

$(BUILD)/cairnctl: $(CTL_OBJS) $(BUILD)/proto/internal.pb-c.o $(BUILD)/librpc.a $(BUILD)/libraft.a \
	$(BUILD)/libstore.a $(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
BINS += $(BUILD)/cairnctl
# `cairnctl check perf` runs cairn-bench from the same directory.
$(BUILD)/cairnctl: | $(BUILD)/cairn-bench

$(BUILD)/cairn-bench: $(BUILD)/tools/cairn_bench.o $(BUILD)/librpc.a $(BUILD)/libetcdpb.a \
	$(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
BINS += $(BUILD)/cairn-bench

TEST_SCRIPTS += tools/test_cairnctl.sh tools/test_cairnctl_compat.sh tools/test_inspect.sh \
	tools/test_bench.sh tools/test_cairnctl_cluster.py

.PHONY: bench bench-vs-etcd
bench: $(BUILD)/cairnd $(BUILD)/cairn-bench $(BUILD)/cairnctl
	BUILD=$(BUILD) tools/bench.sh

bench-vs-etcd: $(BUILD)/cairnd $(BUILD)/cairn-bench $(BUILD)/cairnctl
	BUILD=$(BUILD) tools/bench_vs_etcd.sh

# The size targets (1M keys: RSS, disk, restart; 100k watchers), cairnd and
# etcd side by side. SCALE_KEYS / SCALE_WATCHERS / SCALE_PUTS to resize.
.PHONY: bench-scale
bench-scale: $(BUILD)/cairnd $(BUILD)/cairn-bench $(BUILD)/cairnctl
	BUILD=$(BUILD) tools/bench_scale.sh

# `etcdctl check perf` against a 3-member cairn cluster and a 3-member etcd
# cluster on this machine (LOAD=s|m|l|xl, default s).
.PHONY: check-perf-cluster
check-perf-cluster: $(BUILD)/cairnd $(BUILD)/cairnctl
	BUILD=$(BUILD) tools/check_perf_cluster.sh
