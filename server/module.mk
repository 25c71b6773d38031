# server/: cairnd. Everything but main.c goes into libserver.a so tests can
# link the pieces.
SERVER_SRCS := $(filter-out server/main.c,$(wildcard server/*.c))
SERVER_OBJS := $(SERVER_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/proto/internal.pb-c.o
$(BUILD)/libserver.a: $(SERVER_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
LIBS_ALL += $(BUILD)/libserver.a

$(BUILD)/tests/bin/test_server_config: $(BUILD)/tests/test_server_config.o $(BUILD)/libserver.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_server_config
$(BUILD)/tests/bin/test_server_metrics: $(BUILD)/tests/test_server_metrics.o $(BUILD)/libserver.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_server_metrics
$(BUILD)/proto/internal.pb-c.o: $(BUILD)/proto/rpc.pb-c.h $(BUILD)/proto/kv.pb-c.h $(BUILD)/proto/auth.pb-c.h
$(BUILD)/tests/bin/test_server_idmap: $(BUILD)/tests/test_server_idmap.o $(BUILD)/libserver.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_server_idmap

$(BUILD)/cairnd: $(BUILD)/server/main.o $(BUILD)/libserver.a $(BUILD)/librpc.a $(BUILD)/libraft.a $(BUILD)/libstore.a $(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
BINS += $(BUILD)/cairnd

# The watch hub over a real store and rpc server, for tests/test_watch.py.
$(BUILD)/tests/bin/watch_test_server: $(BUILD)/tests/watch_test_server.o $(BUILD)/libserver.a \
	$(BUILD)/librpc.a $(BUILD)/libstore.a $(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
BINS += $(BUILD)/tests/bin/watch_test_server
TEST_SCRIPTS += tests/test_watch.py
$(BUILD)/tests/bin/test_server_sha256: $(BUILD)/tests/test_server_sha256.o $(BUILD)/libserver.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_server_sha256

$(BUILD)/tests/bin/test_apply: $(BUILD)/tests/test_apply.o $(BUILD)/libserver.a $(BUILD)/libstore.a $(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_apply

# make fuzz-apply [FUZZ_SECONDS=seconds]: libFuzzer (clang, ASan+UBSan) on
# srv_apply_entry / srv_check_* / srv_range over a temp store; new inputs go
# to build-fuzz/corpus_apply, seeds come from tests/fuzz/corpus_apply.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_APPLY_SRCS := tests/fuzz/fuzz_apply.c server/apply.c server/check.c server/convert.c \
	$(wildcard store/*.c) common/cairn_error.c
FUZZ_APPLY_GEN := $(addprefix $(BUILD)/proto/,internal.pb-c.c rpc.pb-c.c kv.pb-c.c auth.pb-c.c)
$(FUZZ_BUILD)/fuzz_apply: $(FUZZ_APPLY_SRCS) $(FUZZ_APPLY_GEN) $(PROTO_GEN_H) server/apply.h server/apply_int.h store/store.h
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-I. -I$(BUILD) $(PKG_CFLAGS) -o $@ $(FUZZ_APPLY_SRCS) $(FUZZ_APPLY_GEN) $(LIBS)
.PHONY: fuzz-apply
fuzz-apply: $(FUZZ_BUILD)/fuzz_apply
	@mkdir -p $(FUZZ_BUILD)/corpus_apply
	$< -max_total_time=$(FUZZ_SECONDS) -timeout=10 $(FUZZ_BUILD)/corpus_apply tests/fuzz/corpus_apply

# The hub on a real store with a fake rpc stream (the test defines
# rpc_stream_*; librpc is not linked).
$(BUILD)/tests/bin/test_watch: $(BUILD)/tests/test_watch.o $(BUILD)/libserver.a \
	$(BUILD)/libstore.a $(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_watch

# make fuzz-requests [FUZZ_SECONDS=N]: every request message cairnd decodes.
FUZZ_REQ_GEN := $(addprefix $(BUILD)/proto/,internal.pb-c.c rpc.pb-c.c kv.pb-c.c auth.pb-c.c)
$(FUZZ_BUILD)/fuzz_requests: tests/fuzz/fuzz_requests.c $(FUZZ_REQ_GEN) $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-I. -I$(BUILD) $(PKG_CFLAGS) -o $@ tests/fuzz/fuzz_requests.c $(FUZZ_REQ_GEN) $(LIBS)
.PHONY: fuzz-requests
fuzz-requests: $(FUZZ_BUILD)/fuzz_requests
	@mkdir -p $(FUZZ_BUILD)/corpus_requests
	$< -max_total_time=$(FUZZ_SECONDS) -timeout=10 $(FUZZ_BUILD)/corpus_requests
