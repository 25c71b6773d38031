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
$(BUILD)/tests/bin/test_server_pbcheck: $(BUILD)/tests/test_server_pbcheck.o $(BUILD)/libserver.a \
	$(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_server_pbcheck

$(BUILD)/tests/bin/test_apply: $(BUILD)/tests/test_apply.o $(BUILD)/libserver.a $(BUILD)/libstore.a $(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_apply

# make fuzz-apply [FUZZ_SECONDS=seconds]: srv_apply_entry / srv_check_* /
# srv_range over a temp store; seeds come from tests/fuzz/corpus_apply.
FUZZ_APPLY_GEN := $(addprefix $(BUILD)/proto/,internal.pb-c.c rpc.pb-c.c kv.pb-c.c auth.pb-c.c)
$(eval $(call fuzz_target,apply,tests/fuzz/fuzz_apply.c server/apply.c server/check.c \
	server/convert.c $(wildcard store/*.c) common/cairn_error.c $(FUZZ_APPLY_GEN), \
	$(PROTO_GEN_H) server/apply.h server/apply_int.h store/store.h,tests/fuzz/corpus_apply))

# The hub on a real store with a fake rpc stream (the test defines
# rpc_stream_*; librpc is not linked).
$(BUILD)/tests/bin/test_watch: $(BUILD)/tests/test_watch.o $(BUILD)/libserver.a \
	$(BUILD)/libstore.a $(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_watch

# make fuzz-handlers [FUZZ_SECONDS=N]: every gRPC method of a whole single-voter
# member (real services, raft, storage thread, store) driven by an rpc client
# on its loop, one fresh member per input (tests/fuzz/fuzz_handlers.c); seeds
# in tests/fuzz/seeds_handlers (tests/fuzz/seeds_handlers.py makes them).
$(eval $(call fuzz_target,handlers,tests/fuzz/fuzz_handlers.c $(SERVER_SRCS) $(RPC_SRCS) \
	$(RAFT_SRCS) $(STORE_SRCS) $(COMMON_SRCS) $(FUZZ_APPLY_GEN) $(BUILD)/proto/raft.pb-c.c, \
	$(PROTO_GEN_H) $(wildcard server/*.h rpc/*.h raft/*.h store/*.h) tests/fuzz/fuzz_input.h, \
	tests/fuzz/seeds_handlers))

# make fuzz-requests [FUZZ_SECONDS=N]: every request message cairnd decodes.
$(eval $(call fuzz_target,requests,tests/fuzz/fuzz_requests.c server/pbcheck.c $(FUZZ_APPLY_GEN), \
	$(PROTO_GEN_H) server/pbcheck.h,))
