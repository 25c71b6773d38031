# proto/: see DESIGN.md §1. Sources, libraries and tests are listed here.
PROTO_SRCS += $(wildcard proto/*.proto)

# libetcdpb.a: the etcd-compatible client API (mvccpb, authpb, etcdserverpb).
# C names: Mvccpb__KeyValue, Authpb__User, Etcdserverpb__RangeRequest, ...
# proto/raft.proto belongs to raft/, which links its own generated object.
ETCDPB_PROTOS := proto/kv.proto proto/auth.proto proto/rpc.proto
ETCDPB_OBJS := $(ETCDPB_PROTOS:%.proto=$(BUILD)/%.pb-c.o)
$(BUILD)/libetcdpb.a: $(ETCDPB_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
LIBS_ALL += $(BUILD)/libetcdpb.a

# Generated sources are inputs of pattern rules only; keep make from deleting
# them as intermediates (a deleted header would make every object rebuild).
.SECONDARY: $(patsubst %.proto,$(BUILD)/%.pb-c.c,$(wildcard proto/*.proto)) \
	$(patsubst %.proto,$(BUILD)/%.pb-c.h,$(wildcard proto/*.proto))
# rpc.pb-c.c includes kv.pb-c.h and auth.pb-c.h: generate all headers first.
$(ETCDPB_OBJS): $(ETCDPB_PROTOS:%.proto=$(BUILD)/%.pb-c.h)
TEST_SCRIPTS += tests/check_proto_compat.py
