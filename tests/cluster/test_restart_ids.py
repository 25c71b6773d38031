#!/usr/bin/python3
"""A member restarted while its own proposals are still uncommitted in the
raft log must not answer its new requests with those entries' results
(regression test for 9dead5c: request ids restarted at 0 with the
process, so on applying an old entry the restarted member found a new
request that had drawn the same id and acknowledged a put with an older
put's revision).

5 members, a long election timeout (the leader keeps leading without a
quorum for a few seconds). Follower A forwards puts to the leader while
the three other followers are stopped (SIGSTOP): the leader and A hold
them in their logs, uncommitted (2 of 5). A is SIGKILLed and restarted;
new puts go through it, again uncommitted; then the stopped followers
continue, everything commits, and A applies its earlier life's entries
first. Every acknowledged put must be answered with its own revision: at
the header revision R, Range of the key at R holds the put's value with
mod_revision R; acknowledgements of sequential puts increase."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_test, wait_for  # noqa: E402

import grpc  # noqa: E402
from etcdpb import rpc_pb2  # noqa: E402

# The leader must stay leader (CheckQuorum) through a restart of A.
EXTRA = ["--election-timeout", "6000", "--heartbeat-interval", "100"]
OLD_PUTS = 12  # through A's first life, left uncommitted
NEW_PUTS = 8   # through A's second life, uncommitted until the others continue


def put_async(m, key, value, timeout):
    return m.kv.Put.future(rpc_pb2.PutRequest(key=key.encode(), value=value.encode()),
                           timeout=timeout)


def stuck(futures, secs):
    """None of the futures completes within secs (the puts wait for a commit)."""
    time.sleep(secs)
    return [f for f in futures if f.done()]


def check_own_revision(checks, name, via, acks):
    """acks: [(key, value, header revision)]. At its revision, each key holds
    its own value, written at that revision."""
    wrong = []
    for key, value, rev in acks:
        r = via.get(key, revision=rev, timeout=5.0)
        got = [(kv.value.decode(), kv.mod_revision) for kv in r.kvs]
        if got != [(value, rev)]:
            wrong.append((key, value, rev, got))
    checks.check("%s: %d acknowledged puts answered with their own revision" % (name, len(acks)),
                 not wrong, "%d wrong, e.g. (key, value, ack revision, at it) %s"
                 % (len(wrong), wrong[:3]))


def body(checks, cleanup):
    c = Cluster(5, extra=EXTRA)
    cleanup.append(c)
    leader, _ = c.wait_leader(timeout=30.0)
    followers = [m for m in c.members if m is not leader]
    a, others = followers[0], followers[1:]
    wait_for("%s knows the leader" % a.name, lambda: a.status(0.3).leader == leader.id, 10.0)
    print("info leader %s, restarted member %s" % (leader.name, a.name))

    for m in others:
        m.proc.send_signal(signal.SIGSTOP)
    stopped = True
    try:
        old = [put_async(a, "/old/%02d" % i, "old-%d" % i, 30.0) for i in range(OLD_PUTS)]
        done = stuck(old, 0.5)
        checks.check("puts through %s stay uncommitted with 3 of 5 stopped" % a.name, not done,
                     [f.exception() or f.result().header.revision for f in done])
        a.kill()
        for f in old:
            try:
                f.result()
            except grpc.RpcError:
                pass
        a.start(Cluster.initial_cluster(c.members))
        wait_for("restarted %s knows the leader" % a.name,
                 lambda: a.status(0.3).leader == leader.id, 10.0)
        checks.check("%s still leads" % leader.name, leader.status(0.5).leader == leader.id)
        new = [(put_async(a, "/new/%02d" % i, "new-%d" % i, 30.0), "/new/%02d" % i, "new-%d" % i)
               for i in range(NEW_PUTS)]
        done = stuck([f for f, _, _ in new], 0.5)
        checks.check("new puts through restarted %s wait for a commit" % a.name, not done,
                     [f.exception() or f.result().header.revision for f in done])
        for m in others:
            m.proc.send_signal(signal.SIGCONT)
        stopped = False
        acks, failed = [], []
        for f, key, value in new:
            try:
                acks.append((key, value, f.result().header.revision))
            except grpc.RpcError as e:
                failed.append((key, e.code().name, e.details()))
    finally:
        if stopped:
            for m in others:
                m.proc.send_signal(signal.SIGCONT)
    checks.check("all %d new puts acknowledged" % NEW_PUTS, not failed, failed)
    check_own_revision(checks, "after the restart", a, acks)
    revs = [r for _, _, r in acks]
    checks.check("new puts acknowledged at distinct revisions", len(set(revs)) == len(revs), revs)

    # sequential puts through A (and the leader) after it all committed
    seq = []
    for i in range(20):
        m = a if i % 2 == 0 else leader
        key, value = "/seq/%02d" % i, "seq-%d" % i
        seq.append((key, value, m.put(key, value, timeout=5.0).header.revision))
    revs = [r for _, _, r in seq]
    checks.check("sequential puts acknowledged at increasing revisions",
                 all(x < y for x, y in zip(revs, revs[1:])), revs)
    checks.check("sequential puts after the earlier ones",
                 not acks or revs[0] > max(r for _, _, r in acks), (revs[0], acks))
    check_own_revision(checks, "sequential", a, seq)
    got = a.get_dict("/old/")
    print("info %d of %d puts of the killed life applied" % (len(got), OLD_PUTS))


if __name__ == "__main__":
    run_test("test_restart_ids", body)
