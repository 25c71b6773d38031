#!/usr/bin/python3
"""The in-memory raft log is bounded in bytes, not only in entries: with
the default --snapshot-count (100000 entries), 96 puts of 1 MiB (more than
the 64 MiB the member lets its log hold) compact the log on the leader,
keeping at most 16 MiB of entries behind the applied index (so it holds
at most 64 + 16 MiB). A follower that
was down meanwhile comes back (HashKV, every value), and a restarted leader
serves (cairnctl inspect shows the raft log bounds)."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BUILD, ROOT, Cluster, check_converged, run_test  # noqa: E402

CTL = os.path.join(ROOT, BUILD, "cairnctl")
PUTS, SIZE = 96, 1 << 20


def raft_bounds(m):
    """(snapshot index, last index) of m's raft log, read offline-safe."""
    out = subprocess.run([CTL, "inspect", "--data-dir", os.path.join(m.dir, "data")], capture_output=True,
                         text=True, timeout=30).stdout
    snap = re.search(r"raft snapshot index: (\d+)", out)
    last = re.search(r"raft last index: (\d+)", out)
    return (int(snap.group(1)) if snap else -1, int(last.group(1)) if last else -1), out


def body(checks, cleanup):
    c = Cluster(3)
    cleanup.append(c)
    leader, _ = c.wait_leader()
    follower = next(m for m in c.members if m is not leader)
    follower.kill(signal.SIGTERM)
    value = "x" * SIZE
    for i in range(PUTS):
        leader.put("/big/%d" % i, value, timeout=20.0)
    leader.put("/big/last", "y")
    (snap, last), out = raft_bounds(leader)
    checks.check("the leader compacted its log under the byte bound (snapshot index %d)" % snap,
                 snap > 1, out)
    checks.check("it holds at most 64 MiB + the 16 MiB kept (%d entries of 1 MiB)"
                 % (last - snap),
                 0 <= last - snap <= 64 + 17 + 3, out)
    follower.start(Cluster.initial_cluster(c.members))
    check_converged(checks, "follower back after %d MiB written" % PUTS, c, timeout=60.0)
    # It may come back by a snapshot, or by the AppendEntries the leader
    # pipelined to it before it was stopped, still queued on the peer link.
    print("info %s came back %s" % (follower.name, "by a snapshot" if "installing snapshot"
                                    in follower.log_text() else "by the log"), flush=True)
    bad = [i for i in range(PUTS)
           if [kv.value for kv in follower.get("/big/%d" % i, timeout=10.0).kvs] != [value.encode()]]
    checks.check("every 1 MiB value read back on %s" % follower.name, not bad, bad[:5])
    leader.kill(signal.SIGTERM)
    leader.start(Cluster.initial_cluster(c.members))
    check_converged(checks, "after the leader's restart", c, timeout=30.0)
    c.wait_leader()
    checks.check("the restarted %s serves the last write" % leader.name,
                 leader.get_dict("/big/last").get("/big/last") == "y")


run_test("raft log bounded in bytes", body)
