"""Space quota, as etcd behaves: with a small --quota-backend-bytes, filling
the store raises the NOSPACE alarm (`etcdctl alarm list` shows it), writes
fail with "etcdserver: mvcc: database space exceeded", reads, deletes and
compaction still work, writes stay refused until `etcdctl alarm disarm`,
and after compaction + disarm writes resume."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import grpc  # noqa: E402

from cluster import Cluster, rpc_pb2, run_test  # noqa: E402

QUOTA = 4 << 20
NOSPACE = "etcdserver: mvcc: database space exceeded"
BIG = "x" * (64 << 10)


def etcdctl(m, *args):
    r = subprocess.run(["etcdctl", "--endpoints", m.endpoint, "--command-timeout=5s"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=dict(os.environ, ETCDCTL_API="3"), timeout=20)
    return r.returncode, r.stdout.decode(errors="replace")


def err_of(fn):
    """None if fn() succeeds, else 'CODE details'."""
    try:
        fn()
        return None
    except grpc.RpcError as e:
        return "%s %s" % (e.code().name, e.details())


def body(checks, cleanup):
    cl = Cluster(1, extra=["--quota-backend-bytes", str(QUOTA), "--snapshot-count", os.environ.get("SNAPCOUNT", "100"),
                           "--experimental-snapshot-catchup-entries", os.environ.get("CATCHUP", "50")])
    cleanup.append(cl)
    m = cl.members[0]
    m.put("s/other", "o")
    m.put("s/keep", "k")
    # fill: overwrite one key with 64 KiB values, the history grows
    err = None
    last = None
    for i in range(400):
        err = err_of(lambda: m.put("s/big", "%d-%s" % (i, BIG)))
        if err:
            break
        last = i
    print("info: %d puts of 64 KiB before the first refusal (quota %d)" % ((last or 0) + 1, QUOTA))
    checks.check("a put is refused once the quota is reached", err is not None,
                 "400 puts of 64 KiB all accepted with quota %d" % QUOTA)
    checks.check("refused with etcd's RESOURCE_EXHAUSTED %r" % NOSPACE,
                 err == "RESOURCE_EXHAUSTED " + NOSPACE, err)
    rc, out = etcdctl(m, "alarm", "list")
    checks.check("etcdctl alarm list shows NOSPACE", rc == 0 and "alarm:NOSPACE" in out, out)
    e = err_of(lambda: m.put("s/small", "1"))
    checks.check("a small put is refused while the alarm is up",
                 e == "RESOURCE_EXHAUSTED " + NOSPACE, e)
    txn = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=b"s/t", value=b"t"))])
    e = err_of(lambda: m.kv.Txn(txn, timeout=3.0))
    checks.check("a txn with a put is refused", e == "RESOURCE_EXHAUSTED " + NOSPACE, e)
    r = m.get("s/big")
    checks.check("reads work: the last acknowledged value is there",
                 last is not None and r.kvs and r.kvs[0].value.decode().startswith("%d-" % last),
                 r.kvs[0].value[:20] if r.kvs else "absent")
    rc, out = etcdctl(m, "get", "s/keep")
    checks.check("etcdctl get works", rc == 0 and "k" in out, out)
    rc, out = etcdctl(m, "del", "s/other")
    checks.check("deletes work (etcdctl del)", rc == 0 and out.strip() == "1", out)
    st = m.status()
    rev, in_use = st.header.revision, st.dbSizeInUse
    rc, out = etcdctl(m, "compact", str(rev), "--physical")
    checks.check("compaction works (etcdctl compact %d)" % rev, rc == 0, out)
    # physical compaction frees the old 64 KiB versions (etcd's dbSizeInUse drops)
    deadline = time.time() + 5
    while time.time() < deadline and m.status().dbSizeInUse > in_use // 2:
        time.sleep(0.1)
    after = m.status().dbSizeInUse
    checks.check("compaction frees space: dbSizeInUse %d -> %d" % (in_use, after),
                 after <= in_use // 2, "the compacted versions are still stored")
    e = err_of(lambda: m.put("s/small", "1"))
    checks.check("writes still refused after compaction until disarmed",
                 e == "RESOURCE_EXHAUSTED " + NOSPACE, e)
    rc, out = etcdctl(m, "defrag")
    print("info: etcdctl defrag: rc %d %s" % (rc, out.strip()[:200]))
    rc, out = etcdctl(m, "alarm", "disarm")
    checks.check("etcdctl alarm disarm", rc == 0, out)
    rc, out = etcdctl(m, "alarm", "list")
    checks.check("no alarm left", rc == 0 and "NOSPACE" not in out, out)
    e = err_of(lambda: m.put("s/small", "after"))
    checks.check("writes resume after compaction + disarm", e is None, e)
    rc, out = etcdctl(m, "put", "s/ctl", "v")
    checks.check("etcdctl put works again", rc == 0 and "OK" in out, out)
    checks.check("the write is read back", m.get_dict("s/small").get("s/small") == "after")
    n_big = 0
    for i in range(10):  # the room compaction gave back is usable
        if err_of(lambda: m.put("s/big2", BIG)):
            break
        n_big += 1
    checks.check("after compaction + disarm, 10 further 64 KiB puts accepted (got %d)" % n_big,
                 n_big == 10)
    etcdctl(m, "alarm", "disarm")
    st = m.status()
    print("info: dbSize %d dbSizeInUse %d quota %d" % (st.dbSize, st.dbSizeInUse, QUOTA))
    # the alarm survives a restart (it is replicated state), and so does disarming
    m.kill()
    m.start(Cluster.initial_cluster(cl.members))
    rc, out = etcdctl(m, "alarm", "list")
    checks.check("no alarm after a restart", rc == 0 and "NOSPACE" not in out, out)


if __name__ == "__main__":
    run_test("space", body)
