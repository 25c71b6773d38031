# rpc/: see DESIGN.md §1. Sources, libraries and tests are listed here.
RPC_SRCS := rpc/grpc_wire.c rpc/http1.c rpc/conn.c rpc/server.c rpc/client.c rpc/peer.c
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

$(BUILD)/tests/bin/test_rpc_wire: $(BUILD)/tests/test_rpc_wire.o $(BUILD)/librpc.a \
	$(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_rpc_wire

# make fuzz-grpc-frame: the gRPC framing and the HTTP/1.1 request parser.
$(eval $(call fuzz_target,grpc_frame,tests/fuzz/fuzz_grpc_frame.c rpc/grpc_wire.c rpc/http1.c \
	common/cairn_error.c,,))
# make fuzz-rpc-server: the whole server (sniffing, HTTP/1.1, HTTP/2
# callbacks, calls, streams) fed one client connection per input over a unix
# socket.
$(eval $(call fuzz_target,rpc_server,tests/fuzz/fuzz_rpc_server.c $(RPC_SRCS) \
	common/cairn_error.c,,tests/fuzz/seeds_rpc_server))

$(BUILD)/tests/bin/test_rpc_client: $(BUILD)/tests/test_rpc_client.o $(BUILD)/librpc.a \
	$(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_rpc_client

$(BUILD)/tests/bin/test_rpc_peer: $(BUILD)/tests/test_rpc_peer.o $(BUILD)/librpc.a \
	$(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_rpc_peer

# Two processes talking through their peer nets (tests/test_rpc_peer_proc.sh).
$(BUILD)/tests/bin/rpc_peer_proc: $(BUILD)/tests/rpc_peer_proc.o $(BUILD)/librpc.a \
	$(BUILD)/libcommon.a
BINS += $(BUILD)/tests/bin/rpc_peer_proc
TEST_SCRIPTS += tests/test_rpc_peer_proc.sh
