# store/: see DESIGN.md §1. Sources, libraries and tests are listed here.
STORE_SRCS := $(wildcard store/*.c)
STORE_OBJS := $(STORE_SRCS:%.c=$(BUILD)/%.o)
$(BUILD)/libstore.a: $(STORE_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
LIBS_ALL += $(BUILD)/libstore.a

STORE_TEST_DEPS := $(BUILD)/libstore.a $(BUILD)/libcommon.a
$(BUILD)/tests/bin/test_store: $(BUILD)/tests/test_store.o $(STORE_TEST_DEPS)
$(BUILD)/tests/bin/test_store_model: $(BUILD)/tests/test_store_model.o $(STORE_TEST_DEPS)
$(BUILD)/tests/bin/test_store_crash: $(BUILD)/tests/test_store_crash.o $(STORE_TEST_DEPS)
TEST_BINS += $(BUILD)/tests/bin/test_store $(BUILD)/tests/bin/test_store_model \
	$(BUILD)/tests/bin/test_store_crash

# make bench-store [BENCH_ARGS="-n 1000000"]: puts/s, ranges/s, disk size.
$(BUILD)/tools/bench_store: $(BUILD)/tools/bench_store.o $(STORE_TEST_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LIBS)
.PHONY: bench-store
bench-store: $(BUILD)/tools/bench_store
	$(BUILD)/tools/bench_store $(BENCH_ARGS)

# make fuzz-store-records [FUZZ_SECONDS=N]: corrupted LMDB records under every
# store reader and writer and store_check (tests/fuzz/fuzz_store_records.c);
# seeds in tests/fuzz/seeds_store_records (tests/fuzz/seeds_store_records.py).
$(eval $(call fuzz_target,store_records,tests/fuzz/fuzz_store_records.c $(STORE_SRCS) \
	common/cairn_error.c,store/store.h store/store_int.h tests/store_test_util.h \
	tests/fuzz/fuzz_input.h,tests/fuzz/seeds_store_records))
