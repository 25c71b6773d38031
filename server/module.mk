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
