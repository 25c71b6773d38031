# raft/: see DESIGN.md §1. Sources, libraries and tests are listed here.
#   libraft.a: the core (raft.c, raft_log.c, raft_mem.c), the LMDB storage
#   (raft_lmdb.c) and the message codec (raft_codec.c + generated raft.pb-c.c).
RAFT_SRCS := $(wildcard raft/*.c)
RAFT_OBJS := $(RAFT_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/proto/raft.pb-c.o
$(BUILD)/libraft.a: $(RAFT_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
LIBS_ALL += $(BUILD)/libraft.a
