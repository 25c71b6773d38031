# raft/: see DESIGN.md §1. Sources, libraries and tests are listed here.
#   libraft.a: the core (raft.c, log included), the in-memory storage for tests
#   (raft_mem.c), the LMDB storage (raft_lmdb.c) and the message codec
#   (raft_codec.c + generated raft.pb-c.c).
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

# make fuzz-raft-step [FUZZ_SECONDS=N]: bytes -> raft_msg_decode -> raft_step
# of a member of an in-memory 3-member cluster (tests/fuzz/fuzz_raft_step.c);
# seeds in tests/fuzz/seeds_raft_step (tests/fuzz/seeds_raft_step.py makes them).
$(eval $(call fuzz_target,raft_step,tests/fuzz/fuzz_raft_step.c raft/raft.c raft/raft_mem.c \
	raft/raft_codec.c common/cairn_error.c $(BUILD)/proto/raft.pb-c.c, \
	$(BUILD)/proto/raft.pb-c.h raft/raft.h raft/raft_codec.h tests/fuzz/fuzz_input.h, \
	tests/fuzz/seeds_raft_step))
# make fuzz-raft-lmdb [FUZZ_SECONDS=N]: corrupted raft_log / raft_state records
# under the raft_lmdb storage reads, raft_new and a core run on them
# (tests/fuzz/fuzz_raft_lmdb.c); seeds in tests/fuzz/seeds_raft_lmdb
# (tests/fuzz/seeds_raft_lmdb.py makes them).
$(eval $(call fuzz_target,raft_lmdb,tests/fuzz/fuzz_raft_lmdb.c raft/raft.c raft/raft_mem.c \
	raft/raft_lmdb.c common/cairn_error.c,raft/raft.h raft/raft_lmdb.h tests/fuzz/fuzz_input.h, \
	tests/fuzz/seeds_raft_lmdb))
