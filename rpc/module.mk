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

# libFuzzer target for the gRPC framing and the HTTP/1.1 request parser.
# `fuzz`/`fuzz-short` collect every module's targets as prerequisites.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
.PHONY: fuzz fuzz-short fuzz-rpc fuzz-rpc-short
fuzz: fuzz-rpc
fuzz-short: fuzz-rpc-short fuzz-apply fuzz-requests
fuzz-rpc: $(FUZZ_BUILD)/fuzz_grpc_frame $(FUZZ_BUILD)/fuzz_rpc_server
$(FUZZ_BUILD)/fuzz_grpc_frame: tests/fuzz/fuzz_grpc_frame.c rpc/grpc_wire.c rpc/http1.c \
	common/cairn_error.c
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. $(PKG_CFLAGS) \
		-o $@ $^
# The whole server (sniffing, HTTP/1.1, HTTP/2 callbacks, calls, streams) fed
# one client connection per input over a unix socket.
$(FUZZ_BUILD)/fuzz_rpc_server: tests/fuzz/fuzz_rpc_server.c $(RPC_SRCS) common/cairn_error.c
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. $(PKG_CFLAGS) \
		-o $@ $^ $(PKG_LIBS)
fuzz-rpc-short: $(FUZZ_BUILD)/fuzz_grpc_frame $(FUZZ_BUILD)/fuzz_rpc_server
	@mkdir -p $(FUZZ_BUILD)/corpus_grpc_frame $(FUZZ_BUILD)/corpus_rpc_server
	$(FUZZ_BUILD)/fuzz_grpc_frame -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		$(FUZZ_BUILD)/corpus_grpc_frame
	$(FUZZ_BUILD)/fuzz_rpc_server -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		-timeout=10 $(FUZZ_BUILD)/corpus_rpc_server tests/fuzz/seeds_rpc_server

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
