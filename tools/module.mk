# tools/: cairnctl (the CLI, online and offline inspection), cairn-bench (the
# load generator) and their tests. See DESIGN.md §1.
#
#   make bench            cairn-bench against a fresh cairnd, then etcd (table)
#   BENCH_QUICK=1         a shorter run

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

.PHONY: bench
bench: $(BUILD)/cairnd $(BUILD)/cairn-bench $(BUILD)/cairnctl
	BUILD=$(BUILD) tools/bench.sh
