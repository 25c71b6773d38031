"""Durability kill loop: cairnd SIGKILLed under continuous writes, restarted,
and every acknowledged write read back with its value.

  single member: CYCLES (default 200) cycles of a short write burst by 4
    concurrent writers, SIGKILL, restart; after each restart the cycle's
    acknowledged writes are checked, and every 25 cycles (and at the end)
    all writes of all cycles; the revision never goes back over a restart.
  cluster: CLUSTER_CYCLES (default 10) cycles on 3 members, all SIGKILLed
    at once and restarted; acknowledged writes read back linearizably on
    every member, and HashKV equal on all members once converged.

Process and cluster management is tests/cluster/cluster.py's."""
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
from checker import check_no_lost_writes  # noqa: E402
import grpc  # noqa: E402

from cluster import Cluster, Writer, check_converged, kill_all, rpc_pb2, run_test  # noqa: E402

CYCLES = int(os.environ.get("CYCLES", "200"))
CLUSTER_CYCLES = int(os.environ.get("CLUSTER_CYCLES", "10"))
SEED = int(os.environ.get("SEED", str(int(time.time()))))
WRITERS = 4


def burst(members, prefix, secs):
    ws = [Writer(members, "%sw%d/" % (prefix, i), timeout=2.0) for i in range(WRITERS)]
    for w in ws:
        w.start()
    time.sleep(secs)
    return ws


def lost(acked, got):
    return check_no_lost_writes([(k, v, None) for k, v in acked.items()], got)


def single(checks, cleanup):
    rng = random.Random(SEED)
    cl = Cluster(1)
    cleanup.append(cl)
    m = cl.members[0]
    initial = Cluster.initial_cluster(cl.members)
    all_acked = {}
    violations = []
    indeterminate = 0
    restart_s = []
    t0 = time.time()
    for c in range(CYCLES):
        ws = burst([m], "d/c%04d/" % c, rng.uniform(0.05, 0.25))
        st = m.status(0.5)  # a revision the member reported: committed, durable
        kill_all([m])
        for w in ws:
            w.stop()
        t1 = time.time()
        m.start(initial)
        restart_s.append(time.time() - t1)
        rev_after = m.status(2.0)
        if rev_after is None:
            violations.append("cycle %d: no Status after the restart" % c)
        elif st is not None and rev_after.header.revision < st.header.revision:
            violations.append("cycle %d: revision went back from %d to %d over the restart"
                              % (c, st.header.revision, rev_after.header.revision))
        acked = {}
        for w in ws:
            acked.update(w.acked)
            indeterminate += w.indeterminate
        all_acked.update(acked)
        got = m.get_dict("d/c%04d/" % c, timeout=10.0)
        v = lost(acked, got)
        if (c + 1) % 25 == 0 or c == CYCLES - 1:
            v += lost(all_acked, m.get_dict("d/", timeout=30.0))
        if v:
            violations += ["cycle %d: %s" % (c, x) for x in v]
            print("cycle %d: %d violations, e.g. %s" % (c, len(v), v[0]), flush=True)
    secs = time.time() - t0
    print("info single: %d kill cycles in %.1fs, %d acknowledged writes checked, %d indeterminate, "
          "restart median %.3fs max %.3fs, seed %d"
          % (CYCLES, secs, len(all_acked), indeterminate, sorted(restart_s)[len(restart_s) // 2],
             max(restart_s), SEED), flush=True)
    checks.check("single member: %d SIGKILL cycles, all %d acknowledged writes present with their "
                 "value" % (CYCLES, len(all_acked)), not violations,
                 "%d lost, e.g. %s" % (len(violations), violations[:3]))
    checks.check("single member: writes acknowledged in every cycle",
                 len(all_acked) >= CYCLES, "only %d acknowledged" % len(all_acked))
    cl.close()


def whole_cluster(checks, cleanup):
    rng = random.Random(SEED + 1)
    cl = Cluster(3)
    cleanup.append(cl)
    initial = Cluster.initial_cluster(cl.members)
    cl.wait_leader()
    all_acked = {}
    violations = []
    hash_bad = []
    t0 = time.time()
    for c in range(CLUSTER_CYCLES):
        ws = burst(cl.members, "d/c%04d/" % c, rng.uniform(0.15, 0.5))
        # a compaction in flight when the cluster dies: the sweep must
        # resume after the restart and leave every member with the same data
        st = cl.members[0].status(1.0)
        if st is not None and st.header.revision > 10:
            compact_rev = st.header.revision - rng.randrange(1, 10)
            try:
                cl.members[c % 3].kv.Compact(rpc_pb2.CompactionRequest(revision=compact_rev),
                                             timeout=2.0)
            except grpc.RpcError as e:
                print("cycle %d: compact %d: %s" % (c, compact_rev, e.code()), flush=True)
        time.sleep(rng.uniform(0.0, 0.3))
        kill_all(cl.members)
        for w in ws:
            w.stop()
        for m in cl.members:
            m.start(initial, wait=False)
        for m in cl.members:
            m.wait_serving()
        cl.wait_leader(timeout=20.0)
        for w in ws:
            all_acked.update(w.acked)
        for m in cl.members:
            v = lost(all_acked, m.get_dict("d/", timeout=30.0))
            violations += ["cycle %d on %s: %s" % (c, m.name, x) for x in v]
        rev, hashes = cl.wait_converged(timeout=30.0)
        if len(set(hashes.values())) != 1:
            hash_bad.append("cycle %d rev %d: %s" % (c, rev, hashes))
    print("info cluster: %d whole-cluster kill cycles in %.1fs, %d acknowledged writes"
          % (CLUSTER_CYCLES, time.time() - t0, len(all_acked)), flush=True)
    checks.check("3 members: %d whole-cluster SIGKILL cycles, all %d acknowledged writes on every "
                 "member" % (CLUSTER_CYCLES, len(all_acked)), not violations,
                 "%d lost, e.g. %s" % (len(violations), violations[:3]))
    checks.check("3 members: HashKV equal after every restart", not hash_bad, hash_bad[:3])
    check_converged(checks, "3 members final", cl)


def early(checks, cleanup):
    """A fresh member SIGKILLed within its first milliseconds (before its
    first log compaction, which used to be the only record of the first
    configuration in raft's storage) must elect itself after a restart:
    it came back not a voter and never campaigned ("no leader")."""
    stuck = []
    for delay in (0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.1):
        cl = Cluster(1, start=False)
        cleanup.append(cl)
        m = cl.members[0]
        initial = Cluster.initial_cluster(cl.members)
        m.start(initial, wait=False)
        time.sleep(delay)
        m.kill()
        m.start(initial, wait=False)
        try:
            m.wait_serving(timeout=15.0)
            m.put("early", "x", timeout=5.0)
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            stuck.append("killed after %.0f ms: %s" % (delay * 1000, e))
        m.kill()
    checks.check("a fresh member killed within 5-100 ms of its first start leads and "
                 "takes a put after a restart", not stuck, stuck)


def body(checks, cleanup):
    early(checks, cleanup)
    if CYCLES:
        single(checks, cleanup)
    if CLUSTER_CYCLES:
        whole_cluster(checks, cleanup)


if __name__ == "__main__":
    run_test("kill loop", body)
