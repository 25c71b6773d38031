"""etcd v3 calls over our own protos (tests/compat/etcdpb.py) on a KV stub
(cluster.Member.kv), a Recorder that records every call as a checker.Op
with invoke/complete times, and a watcher that records what it sees.

A call that times out or loses its connection is indeterminate (ok=None);
a definite gRPC error that cannot have taken effect (e.g. NOSPACE refused
before proposing, UNAVAILABLE before sending) is still recorded as
indeterminate unless the caller knows better: under faults the safe
reading is "may have happened"."""
import os
import sys
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "compat"))
import etcdpb  # noqa: E402
from checker import NOVALUE, Event  # noqa: E402

pb = etcdpb.rpc_pb2
kvpb = etcdpb.kv_pb2
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
from cluster import CHANNEL_OPTS  # noqa: E402

OPTS = CHANNEL_OPTS + [("grpc.max_receive_message_length", 64 << 20), ("grpc.enable_retries", 0)]


def b(s):
    return s if isinstance(s, bytes) else s.encode()


def s(x):
    return x.decode() if isinstance(x, bytes) else x


def put(kv, key, value, timeout):
    """-> header revision"""
    return kv.Put(pb.PutRequest(key=b(key), value=b(value)), timeout=timeout).header.revision


def delete(kv, key, timeout):
    """-> header revision"""
    return kv.DeleteRange(pb.DeleteRangeRequest(key=b(key)), timeout=timeout).header.revision


def put_many(kv, pairs, timeout):
    """One Txn putting every (key, value) -> header revision"""
    ops = [pb.RequestOp(request_put=pb.PutRequest(key=b(k), value=b(v))) for k, v in pairs]
    return kv.Txn(pb.TxnRequest(success=ops), timeout=timeout).header.revision


def get(kv, key, timeout, serializable=False):
    """-> (value or None, mod_revision, header revision)"""
    r = kv.Range(pb.RangeRequest(key=b(key), serializable=serializable), timeout=timeout)
    if r.kvs:
        return s(r.kvs[0].value), r.kvs[0].mod_revision, r.header.revision
    return None, 0, r.header.revision


def cas(kv, key, expect, new, timeout, mod_revision=None):
    """Txn: if value == expect (or mod_revision == mod_revision when given;
    expect None = key absent) then put new, else range key.
    -> (succeeded, observed value or None (NOVALUE on success), header revision)"""
    C = pb.Compare
    if mod_revision is not None:
        cmp = C(result=C.EQUAL, target=C.MOD, key=b(key), mod_revision=mod_revision)
    elif expect is None:
        cmp = C(result=C.EQUAL, target=C.VERSION, key=b(key), version=0)
    else:
        cmp = C(result=C.EQUAL, target=C.VALUE, key=b(key), value=b(expect))
    req = pb.TxnRequest(compare=[cmp],
                        success=[pb.RequestOp(request_put=pb.PutRequest(key=b(key), value=b(new)))],
                        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b(key)))])
    r = kv.Txn(req, timeout=timeout)
    if r.succeeded:
        return True, NOVALUE, r.header.revision
    kvs = r.responses[0].response_range.kvs
    return False, (s(kvs[0].value) if kvs else None), r.header.revision


def compact(kv, revision, timeout):
    kv.Compact(pb.CompactionRequest(revision=revision, physical=False), timeout=timeout)


def compacted_at(kv, revision, timeout):
    """Whether this member has applied a compaction at `revision` or later: a
    serializable read below it is refused as compacted (OUT_OF_RANGE)."""
    try:
        kv.Range(pb.RangeRequest(key=b("\0"), revision=revision - 1, serializable=True),
                 timeout=timeout)
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.OUT_OF_RANGE
    return False


class Recorder:
    """Thread-safe list of Ops with a common clock."""

    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def run_multi(self, ops, fn):
        """One call that is several ops (a txn on several keys): same times,
        outcome and revision for all."""
        self.run(ops[0], fn)
        for o in ops[1:]:
            o.invoke, o.complete, o.ok, o.result, o.rev = (ops[0].invoke, ops[0].complete,
                                                           ops[0].ok, ops[0].result, ops[0].rev)
            with self.lock:
                o.idx = len(self.ops)
                self.ops.append(o)
        return ops

    def run(self, op, fn):
        """Invokes fn() -> (result, rev), fills op. Returns the op."""
        op.invoke = self.now()
        try:
            op.result, op.rev = fn()
            op.ok = True
            op.complete = self.now()
        except grpc.RpcError as e:
            op.ok = None
            op.complete = None
            op.result = e.code()
        except ValueError as e:  # the member's channel was closed (restart): never sent
            op.ok = False
            op.complete = self.now()
            op.result = str(e)
        with self.lock:
            op.idx = len(self.ops)
            self.ops.append(op)
        return op


def watch_record(endpoint, rec, stop, prefix, start_rev, on_event=None):
    """Runs a watch on prefix from start_rev on endpoint until stop is set,
    reconnecting (from the last revision seen + 1) when the stream breaks.
    Fills the checker.WatchRecord `rec`."""
    end = b(prefix)[:-1] + bytes([b(prefix)[-1] + 1])
    next_rev = start_rev
    first = True
    while not stop.is_set():
        ch = grpc.insecure_channel(endpoint, options=OPTS)
        stub = etcdpb.Stub(ch, "Watch")
        reqq = _ReqIter(stop)
        reqq.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=b(prefix), range_end=end, start_revision=next_rev, prev_kv=rec.prev_kv)))
        if not first:
            rec.resumes.append((len(rec.responses), next_rev))
        first = False
        try:
            for resp in stub.Watch(reqq):
                if resp.compact_revision:
                    rec.compacted.append((len(rec.responses), resp.compact_revision))
                    next_rev = resp.compact_revision
                    rec.resumes.append((len(rec.responses), next_rev))
                    reqq.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
                        key=b(prefix), range_end=end, start_revision=next_rev,
                        prev_kv=rec.prev_kv)))
                    continue
                if resp.canceled:
                    break
                if resp.events:
                    evs = []
                    for e in resp.events:
                        typ = "DELETE" if e.type == kvpb.Event.DELETE else "PUT"
                        prev = None
                        if e.HasField("prev_kv") and e.prev_kv.mod_revision:
                            prev = (s(e.prev_kv.value), e.prev_kv.mod_revision)
                        evs.append(Event(typ, s(e.kv.key), None if typ == "DELETE" else s(e.kv.value),
                                         e.kv.mod_revision, e.kv.create_revision, e.kv.version, prev))
                    rec.responses.append(evs)
                    next_rev = evs[-1].mod + 1
                    if on_event:
                        on_event(evs)
                    rec.end = max(rec.end or 0, evs[-1].mod)
                if stop.is_set():
                    break
        except grpc.RpcError:
            pass
        finally:
            reqq.close()
            ch.close()
        if not stop.is_set():
            time.sleep(0.1)
    return rec


class _ReqIter:
    """Request iterator for a bidi stream that ends when stop is set."""

    def __init__(self, stop):
        import queue
        self.q = queue.Queue()
        self.stop = stop

    def put(self, req):
        self.q.put(req)

    def close(self):
        self.q.put(None)

    def __iter__(self):
        return self

    def __next__(self):
        import queue
        while True:
            if self.stop.is_set():
                raise StopIteration
            try:
                r = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if r is None:
                raise StopIteration
            return r
