#!/usr/bin/python3
"""Differential test: the same scripted scenarios against etcd-server from
Debian and against cairnd, responses compared after normalising.

Normalisation: header cluster_id/member_id/raft_term dropped; every revision
is turned into an offset from the revision the scenario started at; fields
that legitimately differ (version strings, db sizes, hashes) are dropped by
the scenario itself. Every scenario runs in its own key prefix; the
compaction scenarios run last because compaction is global.

Usage: differential.py            (etcd vs cairnd; both started here)
       differential.py --only etcd (sanity: scenarios run against etcd twice)
"""
import queue
import re
import sys
import threading
import time

import grpc
from google.protobuf import json_format

sys.path.insert(0, __import__("os").path.dirname(__file__))
from servers import Server  # noqa: E402
from etcdpb import Stub, rpc_pb2 as pb  # noqa: E402

REV_FIELDS = {"revision", "create_revision", "mod_revision", "compact_revision"}


class Client:
    def __init__(self, endpoint):
        self.ch = grpc.insecure_channel(endpoint)
        self.kv = Stub(self.ch, "KV")
        self.watch = Stub(self.ch, "Watch")
        self.lease = Stub(self.ch, "Lease")
        self.maint = Stub(self.ch, "Maintenance")
        self.cluster = Stub(self.ch, "Cluster")

    def rev(self):
        return self.kv.Range(pb.RangeRequest(key=b"\0"), timeout=5).header.revision


def norm(obj, base):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("cluster_id", "member_id", "raft_term"):
                continue
            if k in REV_FIELDS and isinstance(v, (str, int)):
                v = int(v) - base if int(v) > 0 else 0
            else:
                v = norm(v, base)
            out[k] = v
        return out
    if isinstance(obj, list):
        return [norm(x, base) for x in obj]
    return obj


def call(fn, req, base):
    try:
        resp = fn(req, timeout=5)
    except grpc.RpcError as e:
        return {"error": e.code().name, "message": e.details()}
    return norm(json_format.MessageToDict(resp, preserving_proto_field_name=True), base)


def raw_call(c, path, body):
    """A unary call with `body` as the request bytes, as sent."""
    ident = lambda x: x  # noqa: E731
    try:
        c.ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(body, timeout=5)
    except grpc.RpcError as e:
        return {"error": e.code().name, "message": e.details()}
    return "ok"


def alarm_answer(r):
    # etcd 3.5 fills every Alarm answer's header (v3rpc/maintenance.go,
    # Alarm: "if resp.Header == nil ... ms.hdr.fill"), as cairnd does; 3.4
    # returns the applier's answer, which has none.
    r.pop("header", None)
    return r


def self_id(c):
    return c.maint.Status(pb.StatusRequest(), timeout=5).header.member_id


def put(k, v, **kw):
    return pb.PutRequest(key=k, value=v, **kw)


def rng(k, end=b"", **kw):
    return pb.RangeRequest(key=k, range_end=end, **kw)


def prefix_end(p):
    return p[:-1] + bytes([p[-1] + 1])


def cmp(key, target, result, **kw):
    T = pb.Compare
    return T(key=key, target=getattr(T, target), result=getattr(T, result), **kw)


def op_put(k, v):
    return pb.RequestOp(request_put=put(k, v))


def op_range(k, end=b""):
    return pb.RequestOp(request_range=rng(k, end))


def op_del(k, end=b""):
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k, range_end=end))


def watch_events(c, create, base, n_responses, puts=(), timeout=3.0):
    """Opens a watch, performs puts after the create reply, returns responses."""
    q = queue.Queue()
    reqs = queue.Queue()
    reqs.put(pb.WatchRequest(create_request=create))

    def gen():
        while True:
            r = reqs.get()
            if r is None:
                return
            yield r

    stream = c.watch.Watch(gen(), timeout=timeout + 2)

    def reader():
        try:
            for r in stream:
                q.put(r)
        except grpc.RpcError:
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    out = []
    deadline = time.time() + timeout
    did_puts = False
    while len(out) < n_responses and time.time() < deadline:
        try:
            r = q.get(timeout=0.1)
        except queue.Empty:
            continue
        d = norm(json_format.MessageToDict(r, preserving_proto_field_name=True), base)
        out.append(d)
        if not did_puts:
            did_puts = True
            for k, v in puts:
                c.kv.Put(put(k, v), timeout=5)
    reqs.put(None)
    stream.cancel()
    return out


# Each scenario: (name, fn(c, p, base) -> list of results). p is a unique prefix.
SCENARIOS = []


def scenario(fn):
    SCENARIOS.append((fn.__name__, fn))
    return fn


@scenario
def put_and_get(c, p, b):
    return [call(c.kv.Put, put(p + b"a", b"1"), b), call(c.kv.Range, rng(p + b"a"), b),
            call(c.kv.Put, put(p + b"a", b"2", prev_kv=True), b),
            call(c.kv.Range, rng(p + b"a"), b), call(c.kv.Range, rng(p + b"missing"), b)]


@scenario
def range_prefix_limit_count_more(c, p, b):
    for i in range(5):
        c.kv.Put(put(p + b"k%d" % i, b"v%d" % i))
    e = prefix_end(p)
    return [call(c.kv.Range, rng(p, e, limit=2), b), call(c.kv.Range, rng(p, e, limit=5), b),
            call(c.kv.Range, rng(p, e, count_only=True), b),
            call(c.kv.Range, rng(p, e, keys_only=True, limit=3), b)]


@scenario
def range_sorting(c, p, b):
    for k, v in ((b"b", b"3"), (b"a", b"2"), (b"c", b"1"), (b"a", b"9")):
        c.kv.Put(put(p + k, v))
    e = prefix_end(p)
    R = pb.RangeRequest
    out = []
    for order in (R.ASCEND, R.DESCEND):
        for target in (R.KEY, R.VERSION, R.CREATE, R.MOD, R.VALUE):
            out.append(call(c.kv.Range, rng(p, e, sort_order=order, sort_target=target), b))
    out.append(call(c.kv.Range, rng(p, e, sort_order=R.DESCEND, limit=2), b))
    return out


@scenario
def range_old_revisions(c, p, b):
    r1 = c.kv.Put(put(p + b"x", b"1")).header.revision
    c.kv.Put(put(p + b"x", b"2"))
    c.kv.DeleteRange(pb.DeleteRangeRequest(key=p + b"x"))
    return [call(c.kv.Range, rng(p + b"x", revision=r1), b),
            call(c.kv.Range, rng(p + b"x", revision=r1 + 1), b),
            call(c.kv.Range, rng(p + b"x"), b)]


@scenario
def range_future_revision(c, p, b):
    return [call(c.kv.Range, rng(p + b"x", revision=c.rev() + 100), b)]


@scenario
def range_min_max_filters(c, p, b):
    for i in range(4):
        c.kv.Put(put(p + b"k%d" % i, b"v"))
    c.kv.Put(put(p + b"k1", b"w"))
    e = prefix_end(p)
    return [call(c.kv.Range, rng(p, e, min_mod_revision=b + 3), b),
            call(c.kv.Range, rng(p, e, max_mod_revision=b + 2), b),
            call(c.kv.Range, rng(p, e, min_create_revision=b + 2, max_create_revision=b + 3), b)]


@scenario
def range_from_key(c, p, b):
    c.kv.Put(put(p + b"1", b"a"))
    c.kv.Put(put(p + b"2", b"b"))
    return [call(c.kv.Range, rng(p + b"2", b"\0", keys_only=True, limit=1), b)]


@scenario
def put_ignore_value_and_lease(c, p, b):
    return [call(c.kv.Put, put(p + b"k", b"", ignore_value=True), b),
            call(c.kv.Put, put(p + b"k", b"v"), b),
            call(c.kv.Put, put(p + b"k", b"", ignore_value=True), b),
            call(c.kv.Range, rng(p + b"k"), b),
            call(c.kv.Put, put(p + b"k", b"v", ignore_lease=True), b),
            call(c.kv.Put, put(p + b"k", b"v", lease=0x7777), b)]


@scenario
def put_empty_key(c, p, b):
    return [call(c.kv.Put, put(b"", b"v"), b), call(c.kv.Range, rng(b""), b),
            call(c.kv.DeleteRange, pb.DeleteRangeRequest(key=b""), b)]


@scenario
def put_too_large(c, p, b):
    return [call(c.kv.Put, put(p + b"big", b"x" * (2 * 1024 * 1024)), b)]


@scenario
def delete_range_variants(c, p, b):
    for i in range(3):
        c.kv.Put(put(p + b"d%d" % i, b"v"))
    D = pb.DeleteRangeRequest
    return [call(c.kv.DeleteRange, D(key=p + b"d0", prev_kv=True), b),
            call(c.kv.DeleteRange, D(key=p + b"nothing"), b),
            call(c.kv.DeleteRange, D(key=p, range_end=prefix_end(p), prev_kv=True), b),
            call(c.kv.Range, rng(p, prefix_end(p)), b)]


@scenario
def version_reset_after_delete(c, p, b):
    c.kv.Put(put(p + b"v", b"1"))
    c.kv.Put(put(p + b"v", b"2"))
    c.kv.DeleteRange(pb.DeleteRangeRequest(key=p + b"v"))
    return [call(c.kv.Put, put(p + b"v", b"3"), b), call(c.kv.Range, rng(p + b"v"), b)]


@scenario
def txn_compare_value(c, p, b):
    c.kv.Put(put(p + b"c", b"yes"))
    T = pb.TxnRequest
    ok = T(compare=[cmp(p + b"c", "VALUE", "EQUAL", value=b"yes")],
           success=[op_put(p + b"s", b"1"), op_range(p + b"c")], failure=[op_put(p + b"f", b"1")])
    no = T(compare=[cmp(p + b"c", "VALUE", "GREATER", value=b"zzz")],
           success=[op_put(p + b"s", b"2")], failure=[op_range(p + b"s"), op_del(p + b"s")])
    return [call(c.kv.Txn, ok, b), call(c.kv.Txn, no, b)]


@scenario
def txn_compare_missing_key(c, p, b):
    T = pb.TxnRequest
    out = []
    for target, field in (("VERSION", "version"), ("CREATE", "create_revision"),
                          ("MOD", "mod_revision")):
        t = T(compare=[cmp(p + b"none", target, "EQUAL", **{field: 0})],
              success=[op_put(p + b"r" + target.encode(), b"1")])
        out.append(call(c.kv.Txn, t, b))
    t = T(compare=[cmp(p + b"none", "LEASE", "EQUAL", lease=0)], success=[])
    out.append(call(c.kv.Txn, t, b))
    return out


@scenario
def txn_compare_range_end(c, p, b):
    c.kv.Put(put(p + b"r1", b"a"))
    c.kv.Put(put(p + b"r2", b"a"))
    c.kv.Put(put(p + b"r2", b"b"))
    T = pb.TxnRequest
    t1 = T(compare=[cmp(p + b"r", "VERSION", "EQUAL", version=1, range_end=prefix_end(p + b"r"))],
           success=[op_put(p + b"yes", b"1")], failure=[op_put(p + b"no", b"1")])
    t2 = T(compare=[cmp(p + b"r", "VERSION", "LESS", version=3, range_end=prefix_end(p + b"r"))],
           success=[op_put(p + b"yes", b"2")])
    t3 = T(compare=[cmp(p + b"r1", "MOD", "NOT_EQUAL", mod_revision=1)], success=[])
    return [call(c.kv.Txn, t1, b), call(c.kv.Txn, t2, b), call(c.kv.Txn, t3, b)]


@scenario
def txn_duplicate_keys(c, p, b):
    T = pb.TxnRequest
    t1 = T(success=[op_put(p + b"a", b"1"), op_put(p + b"a", b"2")])
    t2 = T(success=[op_put(p + b"a", b"1"), op_del(p, prefix_end(p))])
    t3 = T(success=[op_del(p + b"a"), op_del(p + b"a")])
    t4 = T(success=[op_put(p + b"a", b"1")], failure=[op_put(p + b"a", b"2")])
    return [call(c.kv.Txn, t1, b), call(c.kv.Txn, t2, b), call(c.kv.Txn, t3, b),
            call(c.kv.Txn, t4, b)]


@scenario
def txn_nested(c, p, b):
    T = pb.TxnRequest
    inner = T(compare=[cmp(p + b"n", "VERSION", "EQUAL", version=1)],
              success=[op_put(p + b"inner", b"yes")], failure=[op_put(p + b"inner", b"no")])
    outer = T(success=[op_put(p + b"n", b"1"), pb.RequestOp(request_txn=inner)])
    return [call(c.kv.Txn, outer, b), call(c.kv.Range, rng(p, prefix_end(p)), b)]


@scenario
def txn_too_many_ops(c, p, b):
    T = pb.TxnRequest
    t = T(success=[op_put(p + b"%d" % i, b"v") for i in range(129)])
    return [call(c.kv.Txn, t, b)]


@scenario
def put_prev_kv_of_new_key(c, p, b):
    return [call(c.kv.Put, put(p + b"n", b"1", prev_kv=True), b),
            call(c.kv.Put, put(p + b"n", b"2", prev_kv=True), b)]


@scenario
def put_ignore_lease_keeps_lease(c, p, b):
    L = pb
    c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=60, ID=0x7000 + b))
    out = [call(c.kv.Put, put(p + b"k", b"1", lease=0x7000 + b), b),
           call(c.kv.Put, put(p + b"k", b"2", ignore_lease=True), b),
           call(c.kv.Range, rng(p + b"k"), b)]
    ttl = c.lease.LeaseTimeToLive(L.LeaseTimeToLiveRequest(ID=0x7000 + b, keys=True))
    out.append(sorted(ttl.keys))
    c.lease.LeaseRevoke(L.LeaseRevokeRequest(ID=0x7000 + b))
    return out


@scenario
def put_request_too_large(c, p, b):
    # Between --max-request-bytes (1.5 MiB by default) and the gRPC limit
    # (that plus 512 KiB): refused by etcd's server, not by gRPC. Sizes stay
    # 100 bytes away from the limit: etcd measures the raft entry (the
    # request plus a header whose request id varies in length).
    limit = 1536 * 1024
    return [call(c.kv.Put, put(p + b"a", b"x" * (limit - 100)), b),
            call(c.kv.Put, put(p + b"b", b"x" * (limit + 100)), b),
            call(c.kv.Put, put(p + b"c", b"x" * (1800 * 1024)), b),
            call(c.kv.Txn, pb.TxnRequest(success=[op_put(p + b"d", b"x" * (limit + 100))]), b),
            call(c.kv.Range, rng(p, prefix_end(p), keys_only=True), b)]


@scenario
def range_negative_limit(c, p, b):
    for i in range(3):
        c.kv.Put(put(p + b"%d" % i, b"v"))
    e = prefix_end(p)
    # etcd's mvcc takes a limit <= 0 as none (mvcc/kvstore_txn.go rangeKeys).
    return [call(c.kv.Range, rng(p, e, limit=-1, keys_only=True), b),
            call(c.kv.Range, rng(p, e, limit=-5, count_only=True), b)]


@scenario
def range_negative_revision(c, p, b):
    c.kv.Put(put(p + b"r", b"1"))
    c.kv.Put(put(p + b"r", b"2"))
    return [call(c.kv.Range, rng(p + b"r", revision=-1), b)]


@scenario
def delete_range_from_key(c, p, b):
    for k in (b"a", b"b", b"c"):
        c.kv.Put(put(p + k, b"v"))
    # range_end "\0": every key from key on (no later scenario wrote yet).
    return [call(c.kv.DeleteRange, pb.DeleteRangeRequest(key=p + b"b", range_end=b"\0", prev_kv=True), b),
            call(c.kv.Range, rng(p, prefix_end(p)), b)]


@scenario
def txn_empty(c, p, b):
    return [call(c.kv.Txn, pb.TxnRequest(), b),
            call(c.kv.Txn, pb.TxnRequest(compare=[cmp(p + b"x", "VERSION", "GREATER", version=0)]), b)]


@scenario
def txn_ops_limits(c, p, b):
    # checkTxnRequest (api/v3rpc/key.go): each of compare, success and
    # failure may hold 128 ops (--max-txn-ops), nested txns checked alike.
    T = pb.TxnRequest
    ops = lambda n, tag: [op_put(p + tag + b"%d" % i, b"v") for i in range(n)]  # noqa: E731
    return [call(c.kv.Txn, T(success=ops(128, b"s"), failure=ops(128, b"f")), b),
            call(c.kv.Txn, T(compare=[cmp(p + b"%d" % i, "VERSION", "EQUAL", version=0)
                                      for i in range(129)]), b),
            call(c.kv.Txn, T(failure=ops(129, b"g")), b),
            call(c.kv.Txn, T(success=[pb.RequestOp(request_txn=T(success=ops(129, b"h")))]), b)]


@scenario
def txn_put_with_missing_lease(c, p, b):
    T = pb.TxnRequest
    t = T(success=[op_put(p + b"ok", b"1"), pb.RequestOp(request_put=put(p + b"l", b"v", lease=0x7abc))])
    return [call(c.kv.Txn, t, b), call(c.kv.Range, rng(p, prefix_end(p)), b)]


@scenario
def txn_compare_lease(c, p, b):
    L = pb
    c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=60, ID=0x8000 + b))
    c.kv.Put(put(p + b"k", b"v", lease=0x8000 + b))
    T = pb.TxnRequest
    out = [call(c.kv.Txn, T(compare=[cmp(p + b"k", "LEASE", "EQUAL", lease=0x8000 + b)],
                            success=[op_range(p + b"k")]), b),
           call(c.kv.Txn, T(compare=[cmp(p + b"k", "LEASE", "GREATER", lease=0)]), b)]
    c.lease.LeaseRevoke(L.LeaseRevokeRequest(ID=0x8000 + b))
    return out


@scenario
def txn_event_order(c, p, b):
    T = pb.TxnRequest
    t = T(success=[op_put(p + b"z", b"1"), op_put(p + b"a", b"1"), op_del(p + b"q"),
                   op_put(p + b"m", b"1")])
    out = [call(c.kv.Txn, t, b)]
    create = pb.WatchCreateRequest(key=p, range_end=prefix_end(p), start_revision=b + 1)
    out.append(watch_events(c, create, b, 2))
    return out


@scenario
def txn_read_only(c, p, b):
    T = pb.TxnRequest
    return [call(c.kv.Txn, T(success=[op_range(p + b"x")]), b), call(c.kv.Range, rng(p), b)]


@scenario
def lease_lifecycle(c, p, b):
    L = pb
    out = [call(c.lease.LeaseGrant, L.LeaseGrantRequest(TTL=60, ID=0x1000 + b), b)]
    out.append(call(c.kv.Put, put(p + b"l1", b"v", lease=0x1000 + b), b))
    out.append(call(c.kv.Put, put(p + b"l2", b"v", lease=0x1000 + b), b))
    ttl = c.lease.LeaseTimeToLive(L.LeaseTimeToLiveRequest(ID=0x1000 + b, keys=True))
    out.append({"grantedTTL": ttl.grantedTTL, "keys": sorted(ttl.keys), "ID": ttl.ID - b,
                "ttl_ok": 0 < ttl.TTL <= 60})
    out.append(call(c.lease.LeaseRevoke, L.LeaseRevokeRequest(ID=0x1000 + b), b))
    out.append(call(c.kv.Range, rng(p, prefix_end(p)), b))
    out.append(call(c.lease.LeaseTimeToLive, L.LeaseTimeToLiveRequest(ID=0x1000 + b), b))
    return out


@scenario
def lease_errors(c, p, b):
    L = pb
    c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=30, ID=0x2000 + b))
    return [call(c.lease.LeaseGrant, L.LeaseGrantRequest(TTL=30, ID=0x2000 + b), b),
            call(c.lease.LeaseRevoke, L.LeaseRevokeRequest(ID=0x2fff + b), b),
            call(c.lease.LeaseGrant, L.LeaseGrantRequest(TTL=9000000001, ID=0x2001 + b), b)]


@scenario
def lease_leases(c, p, b):
    L = pb
    ids = [0x9000 + b, 0x9001 + b]
    for i in ids:
        c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=60, ID=i))
    c.lease.LeaseRevoke(L.LeaseRevokeRequest(ID=ids[1]))
    r = call(c.lease.LeaseLeases, L.LeaseLeasesRequest(), b)
    # Other scenarios' leases may still live, in either server's order.
    def ours():
        r = call(c.lease.LeaseLeases, L.LeaseLeasesRequest(), b)
        r["leases"] = sorted(int(x["ID"]) - b for x in r.get("leases", []) if int(x["ID"]) in ids)
        return r

    out = [ours()]
    c.lease.LeaseRevoke(L.LeaseRevokeRequest(ID=ids[0]))
    return out + [ours()]


@scenario
def lease_grant_ttl_bounds(c, p, b):
    L = pb
    out = []
    for i, ttl in enumerate((1, 0, -5)):
        r = call(c.lease.LeaseGrant, L.LeaseGrantRequest(TTL=ttl, ID=0xa000 + b + i), b)
        if "ID" in r:
            r["ID"] = int(r["ID"]) - b
        out.append(r)
        c.lease.LeaseRevoke(L.LeaseRevokeRequest(ID=0xa000 + b + i))
    return out


@scenario
def lease_move_key(c, p, b):
    L = pb
    c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=30, ID=0x3000 + b))
    c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=30, ID=0x3001 + b))
    c.kv.Put(put(p + b"k", b"v", lease=0x3000 + b))
    c.kv.Put(put(p + b"k", b"v", lease=0x3001 + b))
    c.lease.LeaseRevoke(L.LeaseRevokeRequest(ID=0x3000 + b))
    out = [call(c.kv.Range, rng(p + b"k"), b)]
    c.lease.LeaseRevoke(L.LeaseRevokeRequest(ID=0x3001 + b))
    out.append(call(c.kv.Range, rng(p + b"k"), b))
    return out


@scenario
def lease_keepalive(c, p, b):
    L = pb
    c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=20, ID=0x4000 + b))
    resps = list(c.lease.LeaseKeepAlive(iter([L.LeaseKeepAliveRequest(ID=0x4000 + b),
                                              L.LeaseKeepAliveRequest(ID=0x4fff + b)]),
                                        timeout=5))
    return [[{"ID": r.ID - b if r.ID else 0, "TTL": r.TTL} for r in resps]]


@scenario
def lease_expiry_deletes_keys(c, p, b):
    L = pb
    c.lease.LeaseGrant(L.LeaseGrantRequest(TTL=1, ID=0x5000 + b))
    c.kv.Put(put(p + b"e", b"v", lease=0x5000 + b))
    deadline = time.time() + 8
    while time.time() < deadline:
        if c.kv.Range(rng(p + b"e")).count == 0:
            return ["expired"]
        time.sleep(0.1)
    return ["not expired"]


@scenario
def watch_from_revision(c, p, b):
    c.kv.Put(put(p + b"w", b"1"))
    c.kv.Put(put(p + b"w", b"2"))
    create = pb.WatchCreateRequest(key=p + b"w", start_revision=b + 1, prev_kv=True)
    return [watch_events(c, create, b, 2)]


@scenario
def watch_live_prefix_filters(c, p, b):
    W = pb.WatchCreateRequest
    create = W(key=p, range_end=prefix_end(p), filters=[W.NODELETE])
    return [watch_events(c, create, b, 3, puts=[(p + b"1", b"a"), (p + b"2", b"b")])]


@scenario
def watch_progress_and_cancel(c, p, b):
    q = queue.Queue()
    reqs = queue.Queue()
    reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=p + b"x")))
    reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=p + b"y")))

    def gen():
        while True:
            r = reqs.get()
            if r is None:
                return
            yield r

    stream = c.watch.Watch(gen(), timeout=5)
    got = []

    def reader():
        try:
            for r in stream:
                q.put(r)
        except grpc.RpcError:
            pass

    threading.Thread(target=reader, daemon=True).start()
    got.append(q.get(timeout=3))
    got.append(q.get(timeout=3))
    reqs.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
    got.append(q.get(timeout=3))
    reqs.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=got[0].watch_id)))
    got.append(q.get(timeout=3))
    reqs.put(None)
    stream.cancel()
    return [norm(json_format.MessageToDict(r, preserving_proto_field_name=True), b) for r in got]


@scenario
def watch_after_half_close(c, p, b):
    """etcd's recvLoop returns nil on EOF and the stream stays open: a client
    that half-closes right after its create still gets every event, from the
    history and live, until its deadline ends the stream."""
    for i in range(30):
        c.kv.Put(put(p + b"h%02d" % i, b"old"))
    create = pb.WatchCreateRequest(key=p, range_end=prefix_end(p), start_revision=b + 1)
    stream = c.watch.Watch(iter([pb.WatchRequest(create_request=create)]), timeout=4)
    resps, end = [], "OK"
    try:
        resps.append(next(stream))
        for i in range(30):
            c.kv.Put(put(p + b"n%02d" % i, b"new"))
        for r in stream:
            resps.append(r)
    except grpc.RpcError as e:
        end = e.code().name
    events = [(e.kv.key[len(p):].decode(), e.kv.mod_revision - b) for r in resps for e in r.events]
    return [{"created": bool(resps) and resps[0].created, "events": events, "end": end}]


@scenario
def member_list(c, p, b):
    r = c.cluster.MemberList(pb.MemberListRequest())
    me = r.members[0]
    u = c.cluster.MemberUpdate(pb.MemberUpdateRequest(ID=me.ID, peerURLs=list(me.peerURLs)))
    # etcd's ClusterServer header has no revision (raw: norm would hide it)
    return [{"n": len(r.members), "named": r.members[0].name != "",
             "peer": len(r.members[0].peerURLs), "client": len(r.members[0].clientURLs),
             "header_revision": r.header.revision},
            {"update_members": len(u.members), "header_revision": u.header.revision}]


@scenario
def status_and_maintenance(c, p, b):
    s = c.maint.Status(pb.StatusRequest())
    out = [{"leader_is_self": s.leader == s.header.member_id, "has_version": s.version != "",
            "db_positive": s.dbSize > 0, "raft_index": s.raftIndex > 0}]
    out.append(alarm_answer(call(c.maint.Alarm, pb.AlarmRequest(action=pb.AlarmRequest.GET), b)))
    out.append(call(c.maint.Defragment, pb.DefragmentRequest(), b))
    h1 = c.maint.HashKV(pb.HashKVRequest(revision=0))
    h2 = c.maint.HashKV(pb.HashKVRequest(revision=0))
    # -1 while nothing was ever compacted (mvcc's compactMainRev)
    out.append({"hash_stable": h1.hash == h2.hash, "compact_revision": h1.compact_revision})
    c.kv.Put(put(p + b"h", b"1"))
    h3 = c.maint.HashKV(pb.HashKVRequest(revision=0))
    out.append({"hash_changes": h3.hash != h1.hash})
    return out


@scenario
def status_fields(c, p, b):
    s = c.maint.Status(pb.StatusRequest(), timeout=5)
    return [{"version_shape": bool(re.fullmatch(r"\d+\.\d+\.\d+", s.version)),
             "raft_term_ge_1": s.raftTerm >= 1, "db_size_positive": s.dbSize > 0,
             "in_use_le_size": 0 < s.dbSizeInUse <= s.dbSize,
             "leader_is_member": s.leader == s.header.member_id != 0,
             "applied_le_index": 0 < s.raftAppliedIndex <= s.raftIndex,
             "errors": list(s.errors), "is_learner": s.isLearner,
             "revision": s.header.revision - b}]


@scenario
def hash_shape(c, p, b):
    r = c.maint.Hash(pb.HashRequest(), timeout=5)
    # The hash of the whole backend differs between stores; its shape not.
    return [{"fields": sorted(f.name for f, _ in r.ListFields()), "hash_nonzero": r.hash != 0,
             "revision": r.header.revision - b}]


@scenario
def hashkv_future_revision(c, p, b):
    return [call(c.maint.HashKV, pb.HashKVRequest(revision=c.rev() + 10), b)]


@scenario
def move_leader(c, p, b):
    me = self_id(c)
    M = pb.MoveLeaderRequest
    return [call(c.maint.MoveLeader, M(targetID=me), b),
            call(c.maint.MoveLeader, M(targetID=me ^ 0x5a5a), b),
            call(c.maint.MoveLeader, M(targetID=0), b)]


@scenario
def alarm_nospace(c, p, b):
    me = self_id(c)
    A = pb.AlarmRequest

    def alarm(action, alarm=pb.NONE):
        r = alarm_answer(call(c.maint.Alarm, A(action=getattr(A, action), memberID=me, alarm=alarm), b))
        for a in r.get("alarms", []):
            a["memberID"] = "self" if int(a.get("memberID", 0)) == me else a.get("memberID")
        return r

    out = [alarm("GET"), alarm("ACTIVATE", pb.NOSPACE), alarm("GET")]
    # Under NOSPACE etcd refuses what would grow the store: puts, txns that
    # write, lease grants; reads and deletes go on.
    out.append(call(c.kv.Put, put(p + b"k", b"v"), b))
    out.append(call(c.kv.Txn, pb.TxnRequest(success=[op_put(p + b"t", b"v")]), b))
    out.append(call(c.kv.Txn, pb.TxnRequest(success=[op_range(p + b"t")]), b))
    out.append(call(c.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=60, ID=0xb000 + b), b))
    out.append(call(c.kv.Range, rng(p + b"k"), b))
    out.append(call(c.kv.DeleteRange, pb.DeleteRangeRequest(key=p + b"k"), b))
    out += [alarm("DEACTIVATE", pb.NOSPACE), alarm("GET")]
    out.append(call(c.kv.Put, put(p + b"k", b"v"), b))
    return out


@scenario
def unknown_method(c, p, b):
    out = [raw_call(c, "/etcdserverpb.KV/Nope", b""), raw_call(c, "/etcdserverpb.Nope/Range", b""),
           raw_call(c, "/nope/", b""), raw_call(c, "/etcdserverpb.KV/Range/x", b""), raw_call(c, "/nope", b"")]
    # A path without a method: grpc-go 1.26 (etcd 3.4) answers it
    # RESOURCE_EXHAUSTED, later ones (etcd 3.5.10+, grpc-go 1.58) and
    # cairnd UNIMPLEMENTED (server.go, handleStream).
    if out[-1].get("error") == "RESOURCE_EXHAUSTED":
        out[-1]["error"] = "UNIMPLEMENTED"
    return out


@scenario
def invalid_protobuf_unary(c, p, b):
    # grpc-go's "grpc: error unmarshalling request: " and the text of etcd's
    # generated Unmarshal (gogo). Not a length that wraps the end offset
    # around: 3.4's generated code does not check for it and panics.
    cases = [("KV/Range", "0a"), ("KV/Range", "0801"), ("KV/Range", "0001"), ("KV/Range", "7e"),
             ("KV/Put", "120561"), ("KV/Txn", "12020801"), ("KV/DeleteRange", "1a00"),
             ("Lease/LeaseGrant", "0a00"), ("Maintenance/Status", "14"), ("Maintenance/HashKV", "0a00")]
    return [raw_call(c, "/etcdserverpb." + m, bytes.fromhex(h)) for m, h in cases]


@scenario
def invalid_protobuf_watch(c, p, b):
    ident = lambda x: x  # noqa: E731
    stream = c.ch.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=ident, response_deserializer=ident)
    try:
        list(stream(iter([bytes.fromhex("0a022900")]), timeout=5))
        return ["no error"]
    except grpc.RpcError as e:
        # grpc-go 1.26 (etcd 3.4) leaves out the ": " that 1.58 (etcd 3.5)
        # writes after "message" (rpc_util.go, recv); cairnd says it as 3.5.
        return [e.code().name, e.details().replace("received message: ", "received message ")]


@scenario
def grpc_compression(c, p, b):
    try:
        c.kv.Range(rng(p + b"x"), timeout=5, compression=grpc.Compression.Gzip)
        return ["served"]
    except grpc.RpcError as e:
        return [e.code().name, e.details()]


@scenario
def compaction(c, p, b):
    r1 = c.kv.Put(put(p + b"c", b"1")).header.revision
    c.kv.Put(put(p + b"c", b"2"))
    r3 = c.kv.Put(put(p + b"c", b"3")).header.revision
    C = pb.CompactionRequest
    out = [call(c.kv.Compact, C(revision=r3 - 1, physical=True), b),
           call(c.kv.Range, rng(p + b"c", revision=r1), b),
           call(c.kv.Range, rng(p + b"c", revision=r3 - 1), b),
           call(c.kv.Compact, C(revision=r1), b),
           call(c.kv.Compact, C(revision=r3 + 100), b)]
    out.append({"hashkv_compact_revision": c.maint.HashKV(pb.HashKVRequest()).compact_revision - b})
    create = pb.WatchCreateRequest(key=p + b"c", start_revision=r1)
    out.append(watch_events(c, create, b, 2, timeout=2))
    return out


@scenario
def hashkv_compacted_revision(c, p, b):
    r1 = c.kv.Put(put(p + b"h", b"1")).header.revision
    c.kv.Put(put(p + b"h", b"2"))
    c.kv.Compact(pb.CompactionRequest(revision=r1 + 1, physical=True))
    return [call(c.maint.HashKV, pb.HashKVRequest(revision=r1), b)]


def run_all(client):
    # etcd's revision counter starts at 1 on an empty store.
    results = [("initial_revision", [client.rev()])]
    for i, (name, fn) in enumerate(SCENARIOS):
        p = b"/diff/%02d/" % i
        base = client.rev()
        try:
            res = fn(client, p, base)
        except Exception as e:  # a scenario that crashes is a difference too
            res = ["exception: %r" % (e,)]
        # Revision accounting: which requests bump the revision must match.
        res.append({"revisions_used": client.rev() - base})
        results.append((name, res))
    return results


def main():
    only_etcd = "--only" in sys.argv
    a = Server("etcd")
    try:
        ra = run_all(Client(a.endpoint))
    finally:
        a.stop()
    b = Server("etcd" if only_etcd else "cairn")
    try:
        rb = run_all(Client(b.endpoint))
    finally:
        b.stop()
    same = 0
    for (name, x), (_, y) in zip(ra, rb):
        if x == y:
            same += 1
            print("ok   %s" % name)
        else:
            print("DIFF %s\n  etcd:  %s\n  cairn: %s" % (name, x, y))
    print("%d scenarios, %d identical" % (len(ra), same))
    if "-v" in sys.argv:
        for name, x in ra:
            print(name, x)
    return 0 if same == len(ra) else 1


if __name__ == "__main__":
    sys.exit(main())
