# rpc/: see DESIGN.md §1. Sources, libraries and tests are listed here.
RPC_SRCS := rpc/grpc_wire.c rpc/http1.c rpc/conn.c rpc/server.c
RPC_OBJS := $(RPC_SRCS:%.c=$(BUILD)/%.o)
$(BUILD)/librpc.a: $(RPC_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
LIBS_ALL += $(BUILD)/librpc.a

# A test server for the python/etcdctl tests (not a test by itself).
$(BUILD)/tests/bin/rpc_echo_server: $(BUILD)/tests/rpc_echo_server.o $(BUILD)/librpc.a \
	$(BUILD)/libetcdpb.a $(BUILD)/libcommon.a
BINS += $(BUILD)/tests/bin/rpc_echo_server
TEST_SCRIPTS += tests/test_rpc_grpc.py
