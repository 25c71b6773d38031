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

# make fuzz-store-records [FUZZ_SECONDS=N]: libFuzzer (clang, ASan+UBSan)
# on corrupted LMDB records under every store reader and writer and
# store_check (tests/fuzz/fuzz_store_records.c); seeds in
# tests/fuzz/seeds_store_records (tests/fuzz/seeds_store_records.py).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_STORE_SRCS := tests/fuzz/fuzz_store_records.c $(STORE_SRCS) common/cairn_error.c
$(FUZZ_BUILD)/fuzz_store_records: $(FUZZ_STORE_SRCS) store/store.h store/store_int.h \
	tests/store_test_util.h
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-I. $(PKG_CFLAGS) -o $@ $(FUZZ_STORE_SRCS) $(LIBS)
.PHONY: fuzz-store-records
fuzz-short: fuzz-store-records
fuzz-store-records: $(FUZZ_BUILD)/fuzz_store_records
	@mkdir -p $(FUZZ_BUILD)/corpus_store_records
	$< -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
		$(FUZZ_BUILD)/corpus_store_records tests/fuzz/seeds_store_records
