# tests/faults: checkers (linearizability, lost writes, revisions, watches)
# validated on handmade histories; durability kill loops, nemesis runs and
# fault injection against real cairnd processes.
TEST_SCRIPTS += tests/faults/test_checker.py
TEST_SCRIPTS += tests/faults/test_kill_loop.py
