#!/usr/bin/python3
"""The watch hub against a real store over real gRPC: python grpc clients
with bindings generated from our proto/, and the real `etcdctl watch`.

Drives build/tests/bin/watch_test_server (see its header for the methods).
Exit 0 when every check passed; prints "N passed, N failed"."""
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat"))
import grpc  # noqa: E402
from etcdpb import Stub, kv_pb2, rpc_pb2  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, BUILD, "tests", "bin", "watch_test_server")
PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


class Server:
    def __init__(self, **env):
        self.dir = tempfile.mkdtemp(prefix="cairn-watch-")
        e = dict(os.environ)
        e.update({k: str(v) for k, v in env.items()})
        self.proc = subprocess.Popen([SERVER, os.path.join(self.dir, "data")],
                                     stdout=subprocess.PIPE, env=e)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("PORT "), "server did not start: %r" % line
        self.port = int(line.split()[1])
        self.addr = "127.0.0.1:%d" % self.port
        self.channel = grpc.insecure_channel(self.addr)
        self.watch = Stub(self.channel, "Watch").Watch

        def unary(name, req):
            return self.channel.unary_unary("/test.Write/" + name,
                                            request_serializer=req.SerializeToString,
                                            response_deserializer=rpc_pb2.PutResponse.FromString)
        self._put = unary("Put", rpc_pb2.PutRequest)
        self._bulk = unary("Bulk", rpc_pb2.PutRequest)
        self._del = unary("Delete", rpc_pb2.DeleteRangeRequest)
        self._txn = unary("Txn", rpc_pb2.TxnRequest)
        self._compact = unary("Compact", rpc_pb2.CompactionRequest)
        self._stats = self.channel.unary_unary("/test.Write/Stats")

    def put(self, key, value):
        return self._put(rpc_pb2.PutRequest(key=b(key), value=b(value)), timeout=10).header.revision

    def bulk(self, prefix, n, value):
        req = rpc_pb2.PutRequest(key=b(prefix), value=b(value), lease=n)
        return self._bulk(req, timeout=60).header.revision

    def delete(self, key, range_end=b""):
        req = rpc_pb2.DeleteRangeRequest(key=b(key), range_end=b(range_end))
        return self._del(req, timeout=10).header.revision

    def txn_puts(self, kvs):
        ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b(k), value=b(v)))
               for k, v in kvs]
        return self._txn(rpc_pb2.TxnRequest(success=ops), timeout=10).header.revision

    def compact(self, rev):
        self._compact(rpc_pb2.CompactionRequest(revision=rev), timeout=30)

    def stats(self):
        text = self._stats(b"", timeout=10).decode()
        return {k: int(v) for k, v in (f.split("=") for f in text.split())}

    def rss_anon_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        return -1

    def stop(self):
        # streams still open: the hub is freed under them
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.channel.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        assert rc == 0, "server exited with %d" % rc


def b(x):
    return x.encode() if isinstance(x, str) else x


class Watch:
    """One Watch stream: requests through a queue, responses collected by a
    thread (or not read at all until start_reading(), for the slow reader)."""

    def __init__(self, server, channel=None, read=True):
        self.reqs = queue.Queue()
        self.resps = queue.Queue()
        self.error = None
        stub = Stub(channel, "Watch").Watch if channel else server.watch
        self.call = stub(iter(self.reqs.get, None))
        self.thread = None
        if read:
            self.start_reading()

    def start_reading(self):
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for r in self.call:
                self.resps.put(r)
        except grpc.RpcError as e:
            self.error = e
        self.resps.put(None)

    def create(self, key, range_end=b"", **kw):
        self.reqs.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b(key), range_end=b(range_end), **kw)))

    def cancel(self, wid):
        self.reqs.put(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(
            watch_id=wid)))

    def progress(self):
        self.reqs.put(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def next(self, timeout=5.0):
        r = self.resps.get(timeout=timeout)
        assert r is not None, "stream ended: %s" % self.error
        return r

    def none_within(self, secs):
        try:
            r = self.resps.get(timeout=secs)
        except queue.Empty:
            return
        raise AssertionError("unexpected response %s" % r)

    def created(self, key, range_end=b"", **kw):
        self.create(key, range_end, **kw)
        r = self.next()
        # A periodic progress notification for an earlier watcher may come
        # first when the machine is slow (sanitizer builds).
        while not r.created and not r.canceled and not r.events:
            r = self.next()
        assert r.created and not r.canceled, r
        return r.watch_id

    def events(self, n, wid=None, timeout=10.0, skip_progress=True):
        """Collects n events (merging fragments); returns (events, responses)."""
        evs, resps = [], []
        deadline = time.time() + timeout
        while len(evs) < n:
            r = self.next(max(0.05, deadline - time.time()))
            if skip_progress and not r.events and not r.created and not r.canceled:
                continue
            if wid is not None:
                assert r.watch_id == wid, r
            resps.append(r)
            evs.extend(r.events)
        return evs, resps

    def close(self):
        self.reqs.put(None)
        self.call.cancel()


CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


# ---------------------------------------------------------------------------


@check
def live_events(s):
    w = Watch(s)
    rev0 = s.put("other", "x")
    w.create("live")
    r = w.next()
    assert r.created and r.watch_id == 0 and r.header.revision == rev0, r
    assert r.header.cluster_id == 0x1234 and r.header.member_id == 0x42 and r.header.raft_term == 3
    r1 = s.put("live", "bar")
    s.put("other", "y")
    r2 = s.delete("live")
    evs, resps = w.events(2, wid=0)
    assert [e.type for e in evs] == [PUT, DELETE], evs
    assert evs[0].kv.key == b"live" and evs[0].kv.value == b"bar"
    assert evs[0].kv.mod_revision == r1 and evs[0].kv.create_revision == r1
    assert evs[0].kv.version == 1 and not evs[0].HasField("prev_kv")
    assert evs[1].kv.key == b"live" and evs[1].kv.mod_revision == r2 and evs[1].kv.version == 0
    assert resps[0].header.revision == r1
    # a second watcher on the stream gets the next id
    assert w.created("live2") == 1
    w.close()


@check
def prefix_and_from_key(s):
    w = Watch(s)
    p = w.created("pfx/", "pfx0")
    f = w.created("zz", b"\x00")
    every = w.created("", b"\x00")
    s.put("pfx/a", "1")
    s.put("pfy", "2")
    s.put("zzz", "3")
    got = {}
    evs = []
    while len(evs) < 5:
        r = w.next()
        for e in r.events:
            got.setdefault(r.watch_id, []).append(e.kv.key)
            evs.append(e)
    assert got == {p: [b"pfx/a"], f: [b"zzz"], every: [b"pfx/a", b"pfy", b"zzz"]}, got
    w.close()


@check
def prev_kv_and_filters(s):
    s.put("pk", "old")
    w = Watch(s)
    a = w.created("pk", prev_kv=True)
    nop = w.created("pk", filters=[rpc_pb2.WatchCreateRequest.NOPUT])
    nod = w.created("pk", filters=[rpc_pb2.WatchCreateRequest.NODELETE])
    s.put("pk", "new")
    s.delete("pk")
    s.put("pk", "again")
    by = {}
    n = 0
    while n < 3 + 1 + 2:
        r = w.next()
        by.setdefault(r.watch_id, []).extend(r.events)
        n += len(r.events)
    pe = by[a]
    assert [e.type for e in pe] == [PUT, DELETE, PUT]
    assert pe[0].prev_kv.value == b"old" and pe[1].prev_kv.value == b"new"
    assert not pe[2].HasField("prev_kv"), "a create has no prev_kv"
    assert [e.type for e in by[nop]] == [DELETE]
    assert [e.type for e in by[nod]] == [PUT, PUT]
    assert not by[nod][0].HasField("prev_kv")
    w.close()


@check
def txn_events_in_one_response(s):
    w = Watch(s)
    wid = w.created("tx/", "tx0")
    rev = s.txn_puts([("tx/a", "1"), ("tx/b", "2"), ("tx/c", "3")])
    r = w.next()
    assert r.watch_id == wid and len(r.events) == 3, r
    assert all(e.kv.mod_revision == rev for e in r.events)
    assert [e.kv.key for e in r.events] == [b"tx/a", b"tx/b", b"tx/c"]
    w.close()


@check
def cancel(s):
    w = Watch(s)
    wid = w.created("c1")
    keep = w.created("c2")
    w.cancel(wid)
    r = w.next()
    assert r.canceled and r.watch_id == wid and not r.created, r
    w.cancel(12345)  # unknown: ignored, as etcd
    s.put("c1", "x")
    rev = s.put("c2", "y")
    r = w.next()
    assert r.watch_id == keep and r.events[0].kv.mod_revision == rev, r
    w.none_within(0.3)
    w.close()


@check
def duplicate_and_empty_range(s):
    w = Watch(s)
    assert w.created("d", watch_id=7) == 7
    w.create("d", watch_id=7)
    r = w.next()
    assert r.created and r.canceled and r.watch_id == -1, r
    assert r.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream", r
    w.create("b", "a")
    r = w.next()
    assert r.created and r.canceled and r.watch_id == -1
    assert r.cancel_reason == "mvcc: watcher range is empty", r
    # auto ids skip the ones the client picked
    assert w.created("d2", watch_id=0) == 0
    w.close()


@check
def progress_request(s):
    w = Watch(s)
    w.created("pr")
    rev = s.put("zzz-other", "1")
    w.progress()
    r = w.next()
    assert r.watch_id == -1 and not r.events and not r.created and r.header.revision == rev, r
    w.close()


@check
def progress_notify_periodic(s):
    w = Watch(s)
    wid = w.created("pn", progress_notify=True)
    other = w.created("pn-quiet")
    rev = s.put("unrelated", "1")
    r = w.next(timeout=3)
    assert r.watch_id == wid and not r.events and r.header.revision >= rev, r
    assert r.watch_id != other
    w.close()


@check
def catch_up_from_history(s):
    half = 6000
    first = s.put("hist-not", "x") + 1
    for value in ("v" * 100, "w" * 100):  # in batches of 500: one batch per apply
        for i in range(half // 500):
            last = s.bulk("hist/%02d-" % i, 500, value)
    s.put("hist-not", "x")
    w = Watch(s)
    w.create("hist/", "hist0", start_revision=first)
    w.progress()  # answered only once the watcher has caught up
    r = w.next()
    assert r.created, r
    evs, resps = w.events(2 * half, timeout=60, skip_progress=False)
    r = w.next()
    assert r.watch_id == -1 and not r.events and r.header.revision >= last, r
    revs = [e.kv.mod_revision for e in evs]
    assert revs == list(range(first, last + 1)), "gap or duplicate"
    assert len(resps) > 1, "expected several chunks"
    assert evs[0].kv.key == b"hist/00-00000000" and evs[half].kv.value == b"w" * 100
    assert evs[half].kv.version == 2
    # then live
    rev = s.put("hist/live", "1")
    r = w.next()
    assert r.events[0].kv.mod_revision == rev
    w.close()


@check
def compacted_start(s):
    s.put("cp", "1")
    s.put("cp", "2")
    rev = s.put("cp", "3")
    s.compact(rev)
    w = Watch(s)
    w.create("cp", start_revision=rev - 2)
    r = w.next()
    assert r.created and not r.canceled, r
    wid = r.watch_id
    r = w.next()
    assert r.canceled and r.watch_id == wid and r.compact_revision == rev, r
    # at the compact revision itself: fine, the kept record is replayed
    ok = w.created("cp", start_revision=rev)
    r = w.next()
    assert r.watch_id == ok and r.events[0].kv.mod_revision == rev, r
    w.close()


@check
def many_watchers_many_streams(s):
    ws = [Watch(s) for _ in range(20)]
    for w in ws:
        for i in range(25):
            w.create("many/%d" % (i % 5))
    for w in ws:
        for i in range(25):
            r = w.next()
            assert r.created and r.watch_id == i
    revs = [s.put("many/%d" % i, "v") for i in range(5)]
    for w in ws:
        seen = {}
        for _ in range(25):
            r = w.next()
            assert len(r.events) == 1
            seen[r.watch_id] = r.events[0].kv.mod_revision
        assert seen == {i: revs[i % 5] for i in range(25)}, seen
    st = s.stats()
    assert st["streams"] >= 20 and st["watchers"] >= 500, st
    for w in ws:
        w.close()


@check
def large_fan_out_pulled(s):
    """One revision to 300 watchers of a stream is more than the hub
    generates at once: the rest is pulled as the connection drains. Every
    watcher still gets every revision exactly once, in order, while puts keep
    coming; a progress request is answered only after all of them."""
    w = Watch(s)
    n_w, n_puts = 300, 6
    for i in range(n_w):
        w.create("fan/", "fan0", prev_kv=(i % 2 == 0))
    for i in range(n_w):
        r = w.next()
        assert r.created and r.watch_id == i, r
    old = s.put("fan/k0", "old")
    value = "f" * 1024
    revs = [s.put("fan/k%d" % (i % 2), value) for i in range(n_puts)]
    w.progress()
    got = {i: [] for i in range(n_w)}
    prev_seen = 0
    deadline = time.time() + 20
    while sum(len(v) for v in got.values()) < n_w * (n_puts + 1):
        r = w.next(max(0.05, deadline - time.time()))
        if r.watch_id == -1:
            raise AssertionError("progress before every event was sent")
        assert not r.created and not r.canceled, r
        for e in r.events:
            got[r.watch_id].append(e.kv.mod_revision)
            if r.watch_id % 2 == 0 and e.kv.mod_revision != old:
                assert e.prev_kv.key == e.kv.key or not e.prev_kv.key, e
                prev_seen += e.prev_kv.key == e.kv.key
    for i in range(n_w):
        assert got[i] == [old] + revs, (i, got[i])
    assert prev_seen > 0
    r = w.next()
    while r.watch_id != -1:
        assert not r.events, r
        r = w.next()
    assert r.header.revision >= revs[-1], r
    w.close()


@check
def max_watchers_per_stream(s):
    w = Watch(s)
    for i in range(300):
        w.create("mx")
    for i in range(300):
        assert w.next().watch_id == i
    w.create("mx")
    r = w.next()
    assert r.created and r.canceled and r.watch_id == -1, r
    w.close()


@check
def fragments(s):
    first = s.bulk("frag/", 40, "f" * 1000) - 39
    w = Watch(s)
    w.create("frag/", "frag0", start_revision=first, fragment=True)
    assert w.next().created
    evs, resps = [], []
    while len(evs) < 40 or resps[-1].fragment:
        r = w.next()
        resps.append(r)
        evs.extend(r.events)
    assert any(r.fragment for r in resps), [len(r.events) for r in resps]
    assert all(r.ByteSize() < 16384 for r in resps)
    assert [e.kv.mod_revision for e in evs] == list(range(first, first + 40))
    # without fragment=True nothing is marked, whatever the size
    w.create("frag/", "frag0", start_revision=first)
    assert w.next().created
    evs, resps = w.events(40)
    assert not any(r.fragment for r in resps)
    assert max(len(r.events) for r in resps) > 1
    w.close()


@check
def half_close_keeps_streaming(s):
    """A client that half-closes its stream (etcd's recvLoop returns nil on
    EOF) still gets every event, caught up and live, until it cancels; the
    cancel then frees the stream."""
    streams = s.stats()["streams"]
    start = s.put("hc/start", "x")
    for i in range(30):
        s.put("hc/old%02d" % i, "v")
    w = Watch(s)
    w.create("hc/", "hc0", start_revision=start + 1)
    w.reqs.put(None)  # the request iterator ends: END_STREAM
    r = w.next()
    assert r.created, r
    for i in range(30):
        s.put("hc/new%02d" % i, "v")
    evs, _ = w.events(60)
    assert [e.kv.mod_revision for e in evs] == list(range(start + 1, start + 61)), evs
    w.none_within(0.3)  # nothing more, and the stream did not end
    assert s.stats()["streams"] == streams + 1
    w.close()
    deadline = time.time() + 5
    while s.stats()["streams"] != streams and time.time() < deadline:
        time.sleep(0.05)
    assert s.stats()["streams"] == streams, s.stats()


@check
def bad_request_closes_stream(s):
    call = s.channel.stream_stream("/etcdserverpb.Watch/Watch")(iter([b"\xff\xff\xff"]))
    try:
        for _ in call:
            pass
        raise AssertionError("stream not closed")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e


@check
def etcdctl_watch(s):
    env = dict(os.environ, ETCDCTL_API="3")
    p = subprocess.Popen(["etcdctl", "--endpoints=" + s.addr, "watch", "ectl"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(1.0)  # let it connect and create the watch
        s.put("ectl", "bar")
        s.put("ectl-no", "x")
        s.delete("ectl")
        out = b""
        deadline = time.time() + 10
        os.set_blocking(p.stdout.fileno(), False)
        want = b"PUT\nectl\nbar\nDELETE\nectl\n\n"  # a delete prints an empty value
        while time.time() < deadline and out != want:
            chunk = p.stdout.read()
            if chunk:
                out += chunk
            time.sleep(0.05)
        assert out == want, (out, p.stderr.read() if p.poll() is not None else b"")
    finally:
        p.terminate()
        p.wait()


class EtcdWriter:
    """The writes of watch_script through real etcd's KV service."""

    def __init__(self, channel):
        self.kv = Stub(channel, "KV")

    def put(self, key, value):
        return self.kv.Put(rpc_pb2.PutRequest(key=b(key), value=b(value)), timeout=10).header.revision

    def delete(self, key):
        return self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b(key)), timeout=10).header.revision

    def compact(self, rev):
        self.kv.Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True), timeout=10)


def norm(msg, base):
    """A response as a dict, revisions relative to base, member ids dropped."""
    from google.protobuf import json_format
    d = json_format.MessageToDict(msg, preserving_proto_field_name=True)

    def walk(x):
        if isinstance(x, dict):
            for k in ("cluster_id", "member_id", "raft_term"):
                x.pop(k, None)
            for k, v in list(x.items()):
                if k in ("revision", "create_revision", "mod_revision", "compact_revision"):
                    x[k] = int(v) - base if int(v) > 0 else 0
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(d)
    return d


def watch_script(writer, stream):
    """One sequence of watch requests and writes; returns the normalized
    responses (run against real etcd and against the hub)."""
    out = []
    base = writer.put("d/base", "0")

    def rec(n=1, unordered=False):
        # etcd orders the responses of different watchers to one revision
        # (and a progress answer among them) at random: compare those as sets
        got = [norm(stream.next(), base) for _ in range(n)]
        if unordered:
            import json
            got.sort(key=lambda d: json.dumps(d, sort_keys=True))
        out.extend(got)
    stream.create("d/k")
    rec()
    writer.put("d/k", "v1")
    writer.put("d/other", "x")
    writer.delete("d/k")
    rec(2)
    stream.create("d/", "d0", start_revision=base + 1, prev_kv=True)
    rec(2)
    stream.progress()
    rec()
    stream.cancel(0)
    rec()
    stream.cancel(99)
    stream.create("d/dup", watch_id=7)
    stream.create("d/dup", watch_id=7)
    stream.create("d/b", "d/a")
    rec(3)
    stream.create("d/f", filters=[rpc_pb2.WatchCreateRequest.NOPUT])
    rec()
    writer.put("d/f", "1")
    writer.delete("d/f")
    rec(3, unordered=True)  # d/ sees both, d/f only the delete
    rev = writer.put("d/c", "1")
    writer.put("d/c", "2")
    stream.progress()
    rec(3, unordered=True)  # d/ sees both puts; the progress
    writer.compact(rev + 1)
    stream.create("d/c", start_revision=rev)
    rec(2)
    stream.none_within(0.3)
    return out


@check
def same_as_etcd(s):
    sys.path.insert(0, os.path.join(ROOT, "tests", "compat"))
    import servers
    etcd = servers.Server("etcd")
    try:
        ch = grpc.insecure_channel(etcd.endpoint)
        w = Watch(None, channel=ch)
        want = watch_script(EtcdWriter(ch), w)
        w.close()
        ch.close()
    finally:
        etcd.stop()
    w = Watch(s)
    got = watch_script(s, w)
    w.close()
    for i, (a, b_) in enumerate(zip(want, got)):
        assert a == b_, "response %d differs:\netcd  %s\ncairn %s" % (i, a, b_)
    assert len(want) == len(got)


ETCD3_CLIENT = """
import sys, etcd3
c = etcd3.client(host="127.0.0.1", port=int(sys.argv[1]), timeout=5)
events, cancel = c.watch_prefix("py3/")
print("ready", flush=True)
for _ in range(2):
    e = next(events)
    print(type(e).__name__, e.key.decode(), e.value.decode(), e.mod_revision, flush=True)
cancel()
c.close()
"""


@check
def python_etcd3_watch(s):
    # python3-etcd3 bundles its own etcd protos: it runs in a process of its own
    p = subprocess.Popen([sys.executable, "-c", ETCD3_CLIENT, str(s.port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n", p.stderr.read()
        r1 = s.put("py3/a", "v1")
        r2 = s.delete("py3/a")
        out, err = p.communicate(timeout=10)
        assert out.decode() == "PutEvent py3/a v1 %d\nDeleteEvent py3/a  %d\n" % (r1, r2), (out, err)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def slow_reader(s):
    """A stream that never reads while 12k puts of 4 KiB happen: the server's
    anonymous memory stays bounded, another stream keeps getting its events,
    and the slow one finally gets every event in order."""
    slow_ch = grpc.insecure_channel(s.addr, options=[("grpc.http2.bdp_probe", 0),
                                                     ("grpc.max_receive_message_length", 64 << 20)])
    slow = Watch(s, channel=slow_ch, read=False)
    fast = Watch(s)
    start = s.put("slow/start", "x")
    slow.create("slow/", "slow0", start_revision=start + 1)  # its create may arrive late
    fid = fast.created("slow/", "slow0")
    time.sleep(0.3)
    base = s.rss_anon_kb()
    value = "s" * 4096
    peak, unsynced_seen = base, 0
    n, per = 12000, 200
    for i in range(n // per):
        rev = s.bulk("slow/k%03d-" % i, per, value)
        t0 = time.time()
        evs, _ = fast.events(per, wid=fid, timeout=10)
        assert evs[-1].kv.mod_revision == rev
        assert time.time() - t0 < 5, "fast stream starved"
        peak = max(peak, s.rss_anon_kb())
        unsynced_seen = max(unsynced_seen, s.stats()["unsynced"])
    assert unsynced_seen >= 1, "the slow stream never fell behind (no back-pressure?)"
    growth = peak - base
    print("slow reader: base %d KiB, peak %d KiB, growth %d KiB (history %d MiB)"
          % (base, peak, growth, n * 4096 >> 20))
    assert growth < 24 * 1024, "server memory grew by %d KiB" % growth
    slow.start_reading()
    r = slow.next()
    assert r.created, r
    evs, _ = slow.events(n, timeout=120)
    revs = [e.kv.mod_revision for e in evs]
    assert revs == list(range(start + 1, start + 1 + n)), "gap or duplicate in slow stream"
    slow.close()
    fast.close()
    slow_ch.close()


def slow_reader_compacted(s):
    """A watcher left behind by a stream that does not read, whose next
    revision is then compacted, is cancelled with compact_revision."""
    ch = grpc.insecure_channel(s.addr, options=[("grpc.http2.bdp_probe", 0)])
    slow = Watch(s, channel=ch, read=False)
    start = s.put("cmp/start", "x")
    slow.create("cmp/", "cmp0", start_revision=start + 1)  # its create may arrive late
    for i in range(4):
        rev = s.bulk("cmp/%d-" % i, 100, "c" * 16384)
    assert s.stats()["unsynced"] >= 1, "the stream never fell behind"
    s.compact(rev)
    slow.start_reading()
    assert slow.next().created
    want = start + 1
    while True:
        r = slow.next()
        if r.canceled:
            assert r.compact_revision == rev and r.watch_id == 0, r
            break
        for e in r.events:
            assert e.kv.mod_revision == want, ("gap before the cancel", want, e.kv.mod_revision, start)
            want += 1
    assert want <= rev, "everything arrived: nothing was compacted away"
    # the stream lives on
    assert slow.created("cmp2") == 1
    slow.close()
    ch.close()


def main():
    if not os.path.exists(SERVER):
        print("missing %s" % SERVER)
        return 1
    passed = failed = 0

    def run(name, fn, srv):
        nonlocal passed, failed
        t = time.time()
        try:
            fn(srv)
            passed += 1
            print("PASS %s (%.2fs)" % (name, time.time() - t))
        except Exception:
            failed += 1
            print("FAIL %s" % name)
            traceback.print_exc()
        sys.stdout.flush()

    s = Server(WATCH_PROGRESS_MS=300, WATCH_CHUNK=500, WATCH_MAX_RESP=16384,
               WATCH_MAX_WATCHERS=300)
    try:
        for fn in CHECKS:
            run(fn.__name__, fn, s)
        open_at_stop = Watch(s)
        open_at_stop.created("stop", start_revision=1)
    finally:
        s.stop()
    # ASan's quarantine of freed memory would read as growth
    asan = "quarantine_size_mb=0:" + os.environ.get("ASAN_OPTIONS", "")
    s = Server(WATCH_CHUNK=100, WATCH_HIGH_WATER=65536, ASAN_OPTIONS=asan)
    try:
        run("slow_reader", slow_reader, s)
        run("slow_reader_compacted", slow_reader_compacted, s)
    finally:
        s.stop()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
