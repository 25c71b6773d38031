#!/usr/bin/python3
"""Membership changes with real members: grow 1 -> 3 (MemberAdd as learner,
start with --initial-cluster-state existing, MemberPromote once it is in
sync), replace a member under a writer (remove one, add a voter on new
ports), shrink 3 -> 1 (the leader first, through itself; removed members exit)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402

from cluster import (Cluster, Writer, check_acked, check_converged, rpc_pb2,  # noqa: E402
                     run_test, wait_for)

NOT_IN_SYNC = "etcdserver: can only promote a learner member which is in sync with leader"


def add_member(checks, c, name, via, learner):
    """MemberAdd through `via`, start the new member with state existing;
    returns it."""
    m = c.add(name)
    t0 = time.time()
    r = via.cluster.MemberAdd(rpc_pb2.MemberAddRequest(peerURLs=[m.peer_url],
                                                       isLearner=learner), timeout=5.0)
    checks.check("MemberAdd %s through %s: the new member (learner=%s) in the answer"
                 % (name, via.name, learner),
                 r.member.ID != 0 and r.member.isLearner == learner
                 and list(r.member.peerURLs) == [m.peer_url], r)
    m.start(Cluster.initial_cluster(c.members), state="existing")
    checks.check("%s joined with the id MemberAdd gave" % name, m.id == r.member.ID,
                 (m.id, r.member.ID))
    checks.timing("%s added and serving" % name, time.time() - t0)
    return m


def promote(checks, c, m, via, timeout=15.0):
    t0 = time.time()
    refused = []

    def try_promote():
        try:
            via.cluster.MemberPromote(rpc_pb2.MemberPromoteRequest(ID=m.id), timeout=5.0)
            return True
        except grpc.RpcError as e:
            if e.details() != NOT_IN_SYNC:
                raise
            refused.append(e.details())
            return False
    wait_for("promote %s through %s" % (m.name, via.name), try_promote, timeout, 0.1)
    checks.timing("%s promoted (refused %d times as not in sync)" % (m.name, len(refused)),
                  time.time() - t0)


def remove_member(checks, c, m, via):
    t0 = time.time()
    r = via.cluster.MemberRemove(rpc_pb2.MemberRemoveRequest(ID=m.id), timeout=5.0)
    checks.check("MemberRemove %s through %s: not in the answer" % (m.name, via.name),
                 m.id not in [x.ID for x in r.members], r)
    rc = m.wait_exit(10.0)
    checks.check("removed member %s exits (exit status %s)" % (m.name, rc), rc is not None)
    checks.timing("%s removed until it exited" % m.name, time.time() - t0)
    c.members.remove(m)
    c.removed.append(m)


def check_members(checks, c, what):
    """Every member lists exactly the cluster's members, all voters, with
    names and client URLs (published through raft: poll)."""
    want = sorted((m.id, m.name, m.client_url, False) for m in c.members)

    def agree():
        return all(sorted((x.ID, x.name, ",".join(x.clientURLs), x.isLearner)
                          for x in m.member_list()) == want for m in c.members)
    try:
        wait_for("member lists agree", agree, 10.0)
        checks.check("%s: all %d members list the same %d voters" % (what, len(c.members),
                                                                     len(want)), True)
    except TimeoutError as e:
        checks.check("%s: member lists agree" % what, False,
                     [(m.name, m.member_list()) for m in c.members if m.alive()] or e)


def check_writes(checks, c, what):
    c.wait_leader()  # every member knows the leader (a restarted one just learns it)
    for m in c.members:
        m.put("/mb/%s/%s" % (what, m.name), m.name)
    want = {"/mb/%s/%s" % (what, m.name): m.name for m in c.members}
    for m in c.members:
        checks.check("%s: writes through every member read on %s" % (what, m.name),
                     m.get_dict("/mb/%s/" % what) == want, m.get_dict("/mb/%s/" % what))
    check_converged(checks, what, c)


def body(checks, cleanup):
    c = Cluster(1)
    cleanup.append(c)
    m0 = c.members[0]
    c.wait_leader()
    for i in range(50):
        m0.put("/mb/seed/%d" % i, "s%d" % i)

    # grow 1 -> 3 with learners; the second add goes through the new member
    m1 = add_member(checks, c, "m1", m0, learner=True)
    # (a joining member knows its role once it has the leader's snapshot)
    learner, secs = wait_for("m1 reports itself a learner",
                             lambda: (m1.status() or rpc_pb2.StatusResponse()).isLearner, 5.0)
    checks.check("m1 reports itself a learner in Status (after %.3fs)" % secs, learner)
    promote(checks, c, m1, m0)
    m2 = add_member(checks, c, "m2", m1, learner=True)
    # MemberPromote through a follower: etcd forwards it to the leader, which
    # alone knows whether the learner is in sync
    try:
        promote(checks, c, m2, m1, timeout=5.0)
        checks.check("MemberPromote of m2 through the follower m1", True)
    except TimeoutError as e:
        checks.check("MemberPromote of m2 through the follower m1", False, e)
        promote(checks, c, m2, m0)
    check_members(checks, c, "grown to 3")
    check_writes(checks, c, "grown")

    # restart the grown cluster: members added at runtime recover their
    # configuration from their own data; then its leader is killed
    t0 = time.time()
    c.restart_all()
    leader, _ = c.wait_leader()
    checks.timing("grown cluster restarted until a leader", time.time() - t0)
    t0 = time.time()
    leader.kill()
    survivors = [m for m in c.members if m is not leader]
    try:
        nl, secs = c.wait_new_leader(survivors, leader, timeout=5.0)
        checks.check("after the restart, killing the leader %s elects %s (%.3fs)"
                     % (leader.name, nl.name, secs), secs < 3.0)
    except TimeoutError as e:
        checks.check("after the restart, killing the leader elects another", False, e)
    leader.start(Cluster.initial_cluster(c.members), state="existing")
    check_writes(checks, c, "restarted")

    # replace m1 by m3 on new ports, while a writer writes through the others
    w = Writer([m0, m2], "/mb/replace/")
    w.start()
    try:
        remove_member(checks, c, m1, m0)
        c.wait_leader()  # m1 may have led: the others elect a new leader first
        add_member(checks, c, "m3", m2, learner=False)
        time.sleep(0.5)
    finally:
        w.stop()
    leader, _ = c.wait_leader()
    check_members(checks, c, "replaced m1 by m3")
    check_acked(checks, "replace", c.members, w)
    check_writes(checks, c, "replaced")

    # shrink 3 -> 1: the leader first, through itself (etcd: it answers once
    # it has applied its own removal, then steps down and exits)
    others = [m for m in c.members if m is not leader]
    remove_member(checks, c, leader, leader)
    t0 = time.time()
    c.wait_leader()
    checks.timing("a leader among the 2 left after removing the leader", time.time() - t0)
    remove_member(checks, c, others[1], others[0])
    check_members(checks, c, "shrunk to 1")
    check_writes(checks, c, "shrunk")
    last = c.members[0]
    checks.check("the seed writes survive on %s" % last.name,
                 len(last.get_dict("/mb/seed/")) == 50)


run_test("cluster membership", body)
