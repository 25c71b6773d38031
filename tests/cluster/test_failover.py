#!/usr/bin/python3
"""Members killed while a writer writes through all three endpoints:
SIGKILL the leader (a new leader within 3 s, no acknowledged write lost,
the killed member restarted catches up: HashKV equal at the same
revision), then the same with a follower (the leader stays, writes go on)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import (Cluster, Reader, Writer, check_acked, check_converged,  # noqa: E402
                     check_reader, run_test, wait_for)

ELECTION_LIMIT = 3.0


def kill_and_restart(checks, c, victim, name, leader):
    """Kills victim under a running writer; returns when the killed member is
    back and converged."""
    survivors = [m for m in c.members if m is not victim]
    w = Writer(c.members, "/%s/" % name)
    rd = Reader(c.members, w)
    w.start()
    rd.start()
    try:
        time.sleep(1.0)
        before = len(w.acked)
        checks.check("%s: writes acknowledged before the kill (%d)" % (name, before), before > 0)
        t0 = time.time()
        victim.kill()
        if victim is leader:
            nl, _ = c.wait_new_leader(survivors, victim)
            secs = time.time() - t0
            checks.timing("%s: new leader %s reported after SIGKILL" % (name, nl.name), secs)
            checks.check("%s: new leader within %.0fs (%.3fs)" % (name, ELECTION_LIMIT, secs),
                         secs < ELECTION_LIMIT)
        else:
            nl = leader
        n = len(w.acked)
        _, secs = wait_for("writes acknowledged with %s down" % victim.name,
                           lambda: len(w.acked) >= n + 20, 10.0)
        checks.timing("%s: 20 more writes acknowledged after the kill" % name,
                      time.time() - t0)
        checks.check("%s: %s still leads" % (name, nl.name),
                      c.leader(survivors) is nl, "leader changed")
    finally:
        rd.stop()
        w.stop()
    check_reader(checks, name, rd)
    check_acked(checks, name, survivors, w)

    t0 = time.time()
    victim.start(Cluster.initial_cluster(c.members))
    checks.timing("%s: %s restarted and serving" % (name, victim.name), time.time() - t0)
    secs = check_converged(checks, name + " after restart", c)
    if secs is not None:
        checks.timing("%s: %s caught up (applied index and HashKV equal)" % (name, victim.name),
                      time.time() - t0)
    check_acked(checks, name + " restarted", [victim], w)


def body(checks, cleanup):
    c = Cluster(3)
    cleanup.append(c)
    leader, _ = c.wait_leader()
    kill_and_restart(checks, c, leader, "leader-kill", leader)
    leader, _ = c.wait_leader()
    follower = next(m for m in c.members if m is not leader)
    kill_and_restart(checks, c, follower, "follower-kill", leader)


run_test("cluster failover", body)
