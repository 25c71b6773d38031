# tests/faults: checkers (linearizability, lost writes, revisions, watches)
# validated on handmade histories; durability kill loops, nemesis runs and
# fault injection against real cairnd processes.
TEST_SCRIPTS += tests/faults/test_checker.py
TEST_SCRIPTS += tests/faults/test_kill_loop.py
TEST_SCRIPTS += tests/faults/test_nemesis.py

# make soak SECONDS=N: nemesis runs (RUN_SECONDS each, default 60) for N
# seconds, then totals; non-zero exit on any checker violation.
SECONDS ?= 600
.PHONY: soak
soak: build-all
	BUILD=$(BUILD) /usr/bin/python3 tests/faults/nemesis.py $(SECONDS)
