#!/usr/bin/python3
"""Leases in a cluster: granted through a follower, a key attached through
another, kept alive through a follower (which forwards keep-alives to the
leader) across a SIGKILL of the leader without expiring; once keep-alives
stop, the lease expires and its key is deleted on every member."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402

from cluster import Cluster, error_text, rpc_pb2, run_test, wait_for  # noqa: E402

TTL = 5


def keep_alive(m, lease_id):
    """One keep-alive through m: the TTL it answers, or the error."""
    try:
        stream = m.lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]),
                                        timeout=1.0)
        return next(stream).TTL
    except grpc.RpcError as e:
        return error_text(e)
    except StopIteration:
        return "no answer"


def body(checks, cleanup):
    c = Cluster(3)
    cleanup.append(c)
    leader, _ = c.wait_leader()
    f1, f2 = [m for m in c.members if m is not leader]
    r = f1.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=TTL), timeout=5.0)
    lease_id = r.ID
    checks.check("LeaseGrant through the follower %s" % f1.name, r.ID != 0 and r.TTL == TTL, r)
    f2.kv.Put(rpc_pb2.PutRequest(key=b"/lease/k", value=b"v", lease=lease_id), timeout=5.0)
    got = keep_alive(f1, lease_id)
    checks.check("keep-alive through the follower %s answers the TTL" % f1.name, got == TTL, got)

    # keep it alive through the followers while the leader is killed
    leader.kill()
    t0 = time.time()
    answered, gaps, last_ok = 0, 0.0, time.time()
    while time.time() - t0 < TTL + 2.0:  # longer than the TTL
        via = f1 if answered % 2 == 0 else f2
        if keep_alive(via, lease_id) == TTL:
            answered += 1
            gaps = max(gaps, time.time() - last_ok)
            last_ok = time.time()
        time.sleep(0.3)
    checks.timing("longest gap between answered keep-alives across the failover", gaps)
    for m in (f1, f2):
        checks.check("the key of the kept-alive lease is still there on %s" % m.name,
                     len(m.get("/lease/k").kvs) == 1)
    ttl = f2.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=True),
                                   timeout=5.0)
    checks.check("LeaseTimeToLive through %s: granted TTL, key attached" % f2.name,
                 ttl.grantedTTL == TTL and 0 < ttl.TTL <= TTL and list(ttl.keys) == [b"/lease/k"],
                 ttl)

    # stop the keep-alives: the new leader revokes it, every member deletes the key
    wait_for("the lease expires on both members",
             lambda: all(not m.get("/lease/k").kvs for m in (f1, f2)), TTL + 10.0, 0.1)
    secs = time.time() - last_ok
    checks.timing("lease expired after the last keep-alive (TTL %ds)" % TTL, secs)
    checks.check("expiry not before the TTL (%.3fs)" % secs, secs >= TTL - 1.0)
    ttl = f1.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id), timeout=5.0)
    checks.check("LeaseTimeToLive through %s: expired (TTL -1)" % f1.name, ttl.TTL == -1, ttl)

    leader.start(Cluster.initial_cluster(c.members))
    _, secs = wait_for("the restarted member has not the key",
                       lambda: not leader.get("/lease/k").kvs, 10.0)
    checks.check("the restarted %s agrees the key is gone" % leader.name, True)


run_test("cluster leases", body)
