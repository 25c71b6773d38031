# raft/: see DESIGN.md §1. Sources, libraries and tests are listed here.
#   libraft.a: the core (raft.c, raft_log.c, raft_mem.c), the LMDB storage
#   (raft_lmdb.c) and the message codec (raft_codec.c + generated raft.pb-c.c).
RAFT_SRCS := $(wildcard raft/*.c)
RAFT_OBJS := $(RAFT_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/proto/raft.pb-c.o
$(BUILD)/libraft.a: $(RAFT_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
LIBS_ALL += $(BUILD)/libraft.a
# Keep the generated codec sources: make would delete them as intermediates.
.SECONDARY: $(BUILD)/proto/raft.pb-c.c $(BUILD)/proto/raft.pb-c.h

# Tests: unit tests, the simulator (tests/raft_sim.c) and its drivers.
RAFT_SIM_OBJ := $(BUILD)/tests/raft_sim.o
$(BUILD)/tests/bin/test_raft_sim: $(BUILD)/tests/test_raft_sim.o $(RAFT_SIM_OBJ) $(BUILD)/libraft.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_raft_sim

# make soak-raft SECONDS=N: randomized simulator runs for N seconds.
.PHONY: soak-raft bench-raft
SECONDS ?= 60
# Seeds start at RAFT_SEED_BASE (default: the clock, so each soak explores
# new seeds; a failure prints the seed to replay).
soak-raft: $(BUILD)/tests/bin/test_raft_sim
	RAFT_SECONDS=$(SECONDS) RAFT_SEED_BASE=$${RAFT_SEED_BASE:-$$(date +%s)} $(BUILD)/tests/bin/test_raft_sim
$(BUILD)/tests/bin/test_raft: $(BUILD)/tests/test_raft.o $(RAFT_SIM_OBJ) $(BUILD)/libraft.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_raft
$(BUILD)/tests/bin/test_raft_scenarios: $(BUILD)/tests/test_raft_scenarios.o $(RAFT_SIM_OBJ) $(BUILD)/libraft.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_raft_scenarios
$(BUILD)/tests/bin/test_raft_codec: $(BUILD)/tests/test_raft_codec.o $(BUILD)/libraft.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_raft_codec
$(BUILD)/tests/bin/test_raft_lmdb: $(BUILD)/tests/test_raft_lmdb.o $(BUILD)/libraft.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_raft_lmdb

# make bench-raft: entries/s committed by the core alone (tests/bench_raft.c).
$(BUILD)/tests/bin/bench_raft: $(BUILD)/tests/bench_raft.o $(BUILD)/libraft.a $(BUILD)/libcommon.a
BINS += $(BUILD)/tests/bin/bench_raft
bench-raft: $(BUILD)/tests/bin/bench_raft
	$(BUILD)/tests/bin/bench_raft

# make fuzz-raft-step [FUZZ_SECONDS=N]: libFuzzer (clang, ASan+UBSan) on
# bytes -> raft_msg_decode -> raft_step of a member of an in-memory
# 3-member cluster (tests/fuzz/fuzz_raft_step.c); seeds in
# tests/fuzz/seeds_raft_step (tests/fuzz/seeds_raft_step.py makes them).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RAFT_SRCS := tests/fuzz/fuzz_raft_step.c raft/raft.c raft/raft_mem.c raft/raft_codec.c \
	common/cairn_error.c
$(FUZZ_BUILD)/fuzz_raft_step: $(FUZZ_RAFT_SRCS) $(BUILD)/proto/raft.pb-c.c $(BUILD)/proto/raft.pb-c.h \
	raft/raft.h raft/raft_codec.h
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-I. -I$(BUILD) $(PKG_CFLAGS) -o $@ $(FUZZ_RAFT_SRCS) $(BUILD)/proto/raft.pb-c.c $(LIBS)
.PHONY: fuzz-raft-step
fuzz-short: fuzz-raft-step
fuzz-raft-step: $(FUZZ_BUILD)/fuzz_raft_step
	@mkdir -p $(FUZZ_BUILD)/corpus_raft_step
	$< -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
		$(FUZZ_BUILD)/corpus_raft_step tests/fuzz/seeds_raft_step
