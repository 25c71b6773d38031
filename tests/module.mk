# tests/: cross-module tests. Each module lists its own tests in its module.mk:
#   $(BUILD)/tests/bin/test_x: $(BUILD)/tests/test_x.o $(BUILD)/libx.a ...
#   TEST_BINS += $(BUILD)/tests/bin/test_x
# Scripts (shell, /usr/bin/python3) go in TEST_SCRIPTS and get BUILD in the
# environment; they exit 0 on pass, 77 on skip (counted as failed: no skip
# counts as passing), anything else on failure.
$(BUILD)/tests/bin/test_error: $(BUILD)/tests/test_error.o $(BUILD)/libcommon.a
TEST_BINS += $(BUILD)/tests/bin/test_error
TEST_SCRIPTS += tests/check_layering.sh
# End-to-end: real cairnd driven by the real etcdctl and python3-etcd3.
TEST_SCRIPTS += tests/compat/test_etcdctl.sh tests/compat/test_etcd3.py tests/compat/test_logs.py \
	tests/compat/test_slow_watcher.py
TEST_SCRIPTS += tests/compat/differential.py tests/compat/test_grpc_errors.py
# Process-level cluster tests: real cairnd members (tests/cluster/cluster.py).
TEST_SCRIPTS += tests/cluster/test_three.py tests/cluster/test_failover.py \
	tests/cluster/test_snapshot.py tests/cluster/test_membership.py \
	tests/cluster/test_partition.py tests/cluster/test_lease.py tests/cluster/test_log_bound.py \
	tests/cluster/test_restart_ids.py
include tests/faults/module.mk
