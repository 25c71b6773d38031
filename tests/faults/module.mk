# tests/faults: checkers (linearizability, lost writes, revisions, watches)
# validated on handmade histories; durability kill loops, nemesis runs and
# fault injection against real cairnd processes.
TEST_SCRIPTS += tests/faults/test_checker.py
TEST_SCRIPTS += tests/faults/test_kill_loop.py
TEST_SCRIPTS += tests/faults/test_nemesis.py

# make soak SECONDS=N: nemesis runs (RUN_SECONDS each, default 60; cluster
# sizes MEMBERS, default alternating 3,5) for N seconds, then totals (by
# fault kind too); non-zero exit on any checker violation.
SECONDS ?= 600
.PHONY: soak
soak: build-all
	BUILD=$(BUILD) /usr/bin/python3 tests/faults/nemesis.py $(SECONDS)

# LD_PRELOAD shim failing fsync/fdatasync/msync/pwrite/writev on demand
# (gnu11: dlsym's object pointer becomes a function pointer).
$(BUILD)/failfs.so: tests/faults/failfs.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -o $@ $< -ldl
BINS += $(BUILD)/failfs.so
TEST_SCRIPTS += tests/faults/test_failfs.py
TEST_SCRIPTS += tests/faults/test_space.py

# LD_PRELOAD shim recording every write and flush of an LMDB data.mdb, from
# which test_powerloss.py rebuilds the file as a power loss could leave it.
$(BUILD)/crashrec.so: tests/faults/crashrec.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -o $@ $< -ldl -lpthread
BINS += $(BUILD)/crashrec.so
TEST_SCRIPTS += tests/faults/test_powerloss.py
