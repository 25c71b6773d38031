#!/usr/bin/python3
"""Network partitions: three members, each in its own network namespace
(made here: a bridge, veth pairs, 10.77.x.y), cut apart with blackhole
routes while the test client reaches all of them from the root namespace.
The leader, then a follower, is isolated from both peers: the isolated
member refuses writes and linearizable reads with etcd's errors, the
majority keeps (or elects) a leader and takes writes; after healing all
members converge (HashKV equal at the same revision) and the formerly
isolated member serves the majority's writes. Needs root: without
namespaces the test fails, it does not skip."""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402

from cluster import (Cluster, Netns, Reader, Writer, check_acked,  # noqa: E402
                     check_converged, check_reader, error_text, is_etcd_unavailable, run_test,
                     wait_for)

MINORITY_TIMEOUT = 15.0  # above the member's request timeout (5 s + 2 election timeouts)


def refused(fn):
    """(refused the etcd way, what happened)."""
    t0 = time.time()
    try:
        r = fn()
    except grpc.RpcError as e:
        return is_etcd_unavailable(e), "%s after %.3fs" % (error_text(e), time.time() - t0)
    return False, "succeeded after %.3fs: %s" % (time.time() - t0, str(r)[:200])


def isolate(checks, c, net, victim, what):
    old_leader = c.leader()
    idx = c.members.index(victim)
    majority = [m for m in c.members if m is not victim]
    w = Writer(majority, "/part/%s/" % what, timeout=2.0)
    rd = Reader(c.members, w)  # the isolated member too: it must not read stale
    w.start()
    rd.start()
    try:
        time.sleep(0.5)
        t0 = time.time()
        for j in range(len(c.members)):
            if j != idx:
                net.cut(idx, j)

        def majority_leader():
            m = c.leader(majority, timeout=0.2)
            return m if m is not None and m is not victim else None
        leader, _ = wait_for("a leader in the majority", majority_leader, 10.0, 0.02)
        checks.timing("%s: majority leader %s after the cut" % (what, leader.name),
                      time.time() - t0)
        if old_leader is not victim:
            checks.check("%s: the majority keeps its leader %s" % (what, old_leader.name),
                         leader is old_leader, leader.name)
        n = len(w.acked)
        wait_for("writes acknowledged by the majority", lambda: len(w.acked) >= n + 20, 10.0)
        checks.timing("%s: majority acknowledged 20 more writes" % what, time.time() - t0)
        for m in majority:
            m.put("/part/%s/through-%s" % (what, m.name), "yes")
        checks.check("%s: the majority takes writes through both members" % what, True)

        # the isolated member: a write and a linearizable read, in parallel
        with ThreadPoolExecutor(2) as ex:
            put = ex.submit(refused, lambda: victim.put("/part/%s/minority" % what, "no",
                                                         timeout=MINORITY_TIMEOUT))
            get = ex.submit(refused, lambda: victim.get("/part/%s/" % what, prefix=True,
                                                         timeout=MINORITY_TIMEOUT))
            ok, detail = put.result()
            checks.check("%s: isolated %s refuses a write with etcd's error (%s)"
                         % (what, victim.name, detail), ok, detail)
            ok, detail = get.result()
            checks.check("%s: isolated %s refuses a linearizable read with etcd's error (%s)"
                         % (what, victim.name, detail), ok, detail)
    finally:
        rd.stop()
        w.stop()
        t1 = time.time()
        for j in range(len(c.members)):
            if j != idx:
                net.heal(idx, j)
    check_reader(checks, what, rd)
    check_acked(checks, what + " (majority)", majority, w)
    secs = check_converged(checks, what + " healed", c, timeout=30.0)
    if secs is not None:
        checks.timing("%s: healed until converged" % what, time.time() - t1)
    got = victim.get("/part/%s/" % what, prefix=True, timeout=10.0)
    keys = {kv.key.decode() for kv in got.kvs}
    checks.check("%s: formerly isolated %s serves the majority's writes" % (what, victim.name),
                 set(w.acked) <= keys and "/part/%s/through-%s" % (what, majority[0].name) in keys,
                 "missing %d" % len(set(w.acked) - keys))
    check_acked(checks, what + " (formerly isolated)", [victim], w)
    victim.put("/part/%s/after" % what, "x")
    checks.check("%s: the healed %s takes writes again" % (what, victim.name),
                 all(m.get("/part/%s/after" % what).kvs for m in c.members))


def body(checks, cleanup):
    try:
        net = Netns(3)
    except Exception as e:
        checks.check("network namespaces can be made (the test needs root)", False, e)
        return
    cleanup.append(net)
    t0 = time.time()
    c = Cluster(3, hosts=net.ips, netns=net.ns)
    cleanup.append(c)
    leader, _ = c.wait_leader()
    checks.timing("3 members in namespaces until a leader", time.time() - t0)
    isolate(checks, c, net, leader, "leader-isolated")
    leader, _ = c.wait_leader()
    follower = next(m for m in c.members if m is not leader)
    isolate(checks, c, net, follower, "follower-isolated")


run_test("cluster partition", body)
