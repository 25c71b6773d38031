#!/usr/bin/python3
"""Snapshot catch-up: with --snapshot-count 100 and 10 catch-up entries, a
follower stopped while the cluster writes well past that comes back by a
snapshot from the leader ("installing snapshot from leader" in its log),
then agrees on HashKV and every write, and keeps replicating by log."""
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, check_converged, rpc_pb2, run_test  # noqa: E402

WRITES = 600


def write_many(member, items, threads=8):
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda kv: member.put(kv[0], kv[1], timeout=10.0), items))


def body(checks, cleanup):
    c = Cluster(3, extra=["--snapshot-count", "100",
                          "--experimental-snapshot-catchup-entries", "10"])
    cleanup.append(c)
    leader, _ = c.wait_leader()
    follower = next(m for m in c.members if m is not leader)
    want = {}
    for i in range(20):
        want["/snap/early/%d" % i] = "e%d" % i
    write_many(leader, want.items())

    follower.kill(signal.SIGTERM)
    checks.check("follower %s stopped by SIGTERM exits 0" % follower.name,
                 follower.proc.returncode == 0, follower.proc.returncode)
    t0 = time.time()
    # overwrites and deletes too, so that HashKV covers more than fresh keys
    items = [("/snap/k/%d" % (i % 200), "v%d" % i) for i in range(WRITES)]
    write_many(leader, items)
    for k, v in items:
        want[k] = v
    for i in range(0, 200, 10):
        leader.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/snap/k/%d" % i), timeout=5.0)
        del want["/snap/k/%d" % i]
    checks.timing("%d writes with %s down" % (WRITES + 20, follower.name), time.time() - t0)

    t0 = time.time()
    follower.start(Cluster.initial_cluster(c.members))
    secs = check_converged(checks, "snapshot catch-up", c, timeout=30.0)
    if secs is not None:
        checks.timing("%s caught up by snapshot (restart until HashKV equal)" % follower.name,
                      time.time() - t0)
    checks.check("%s installed a snapshot from the leader" % follower.name,
                 "installing snapshot from leader" in follower.log_text(),
                 follower.log_text()[-2000:])
    checks.check("the leader %s sent it" % leader.name,
                 "snapshot sent to peer" in leader.log_text(), leader.log_text()[-2000:])
    for m in c.members:
        checks.check("every write read back on %s" % m.name,
                     m.get_dict("/snap/", timeout=10.0) == want, "differs")
        checks.check("serializable reads on %s agree" % m.name,
                     m.get_dict("/snap/", serializable=True) == want, "differs")

    # and replication by log goes on: a put through the caught-up follower
    follower.put("/snap/after", "x")
    for m in c.members:
        r = m.get("/snap/after").kvs
        checks.check("a put through %s after catch-up is read on %s" % (follower.name, m.name),
                     len(r) == 1 and r[0].value == b"x", r)
    check_converged(checks, "after a put through the caught-up follower", c)


run_test("cluster snapshot catch-up", body)
