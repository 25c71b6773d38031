#!/usr/bin/python3
"""test_rpc_grpc.py — the rpc/ server against real clients.

Starts build/tests/bin/rpc_echo_server on a free port and drives it with the
python grpc library (generic calls, raw bytes), urllib/http.client for
HTTP/1.1 on the same port, raw sockets for malformed and never-reading
clients, and the real etcdctl (Go grpc) for /etcdserverpb.Maintenance/Status.
Ends with a graceful SIGTERM: in-flight calls finish, the server exits 0
(under ASan a leak makes that exit non-zero, so this also checks leaks).
"""
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import grpc

BUILD = os.environ.get("BUILD", "build")
SERVER = os.path.join(BUILD, "tests", "bin", "rpc_echo_server")
ident = lambda x: x  # noqa: E731

failures = []


def check(name, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else " -- " + str(detail)), flush=True)
    if not cond:
        failures.append(name)


def start_server():
    p = subprocess.Popen([SERVER, "http://127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        print("server did not start: %r" % line)
        sys.exit(1)
    return p, int(line.split()[1])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def unary(ch, method):
    return ch.unary_unary(method, request_serializer=ident, response_deserializer=ident)


def status_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2raw import (  # noqa: E402
    END_HEADERS, END_STREAM, H2_DATA, H2_GOAWAY, H2_HEADERS, H2_RST, H2_SETTINGS, H2_WINDOW_UPDATE, PREFACE,
    frame, grpc_msg, grpc_outcome, grpc_request, hpack_literal, raw_h2, read_frames, request_headers, stream_ended,
)


# ---------------------------------------------------------------------------


def main():
    # Room for the thousands-of-connections check (the server inherits it).
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    proc, port = start_server()
    target = "127.0.0.1:%d" % port
    ch = grpc.insecure_channel(target)
    echo = unary(ch, "/test.Echo/Echo")
    slow = unary(ch, "/test.Echo/Slow")
    fail = unary(ch, "/test.Echo/Fail")
    stats = unary(ch, "/test.Echo/Stats")
    try:
        # Unary echo, including empty and 1 MiB messages.
        for size in (0, 1, 100, 70000, 1 << 20):
            data = os.urandom(size)
            check("unary echo %d bytes" % size, echo(data, timeout=5) == data)

        # Deferred reply from a timer.
        t0 = time.time()
        r = slow(b"200", timeout=5)
        check("deferred reply", r == b"done" and time.time() - t0 >= 0.19, r)

        # Status codes and percent-encoded messages both ways.
        code, msg = status_of(fail, "5 key not found é 100%\n".encode(), timeout=5)
        check("status NOT_FOUND with encoded message", code == grpc.StatusCode.NOT_FOUND and msg == "key not found é 100%\n", (code, msg))

        # Unknown methods and services.
        code, msg = status_of(unary(ch, "/test.Echo/Nope"), b"x", timeout=5)
        check("unknown method -> UNIMPLEMENTED", code == grpc.StatusCode.UNIMPLEMENTED and "unknown method Nope" in msg, (code, msg))
        code, msg = status_of(unary(ch, "/nope.Svc/X"), b"x", timeout=5)
        check("unknown service -> UNIMPLEMENTED", code == grpc.StatusCode.UNIMPLEMENTED and msg == "unknown service nope.Svc", (code, msg))

        # Oversized request: etcd's wording, and the connection keeps working.
        code, msg = status_of(echo, b"x" * (3 << 20), timeout=10)
        check(
            "oversized -> RESOURCE_EXHAUSTED",
            code == grpc.StatusCode.RESOURCE_EXHAUSTED and msg == "grpc: received message larger than max (3145728 vs. 2097152)",
            (code, msg),
        )
        check("served after oversized", echo(b"after", timeout=5) == b"after")

        # Deadline passes before the deferred reply.
        code, msg = status_of(slow, b"1500", timeout=0.3)
        check("deadline exceeded", code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, msg))

        # Bidi stream: many messages, order kept, OK status at the end.
        bidi = ch.stream_stream("/test.Echo/Bidi", request_serializer=ident, response_deserializer=ident)
        msgs = [str(i).encode() * (1 + i % 50) for i in range(2000)]
        out = list(bidi(iter(msgs), timeout=20))
        check("bidi 2000 messages echoed in order", out == msgs, len(out))

        # Bidi with interleaving: send one, read one.
        import queue

        q = queue.Queue()

        def gen():
            for i in range(100):
                yield b"m%d" % i
                q.get(timeout=5)

        it = bidi(gen(), timeout=20)
        got = []
        for m in it:
            got.append(m)
            q.put(1)
        check("bidi ping-pong 100", got == [b"m%d" % i for i in range(100)], len(got))

        # Many concurrent calls on one channel and on many channels.
        futs = [echo.future(b"c%d" % i, timeout=20) for i in range(1000)]
        check("1000 concurrent unary on one channel", all(f.result() == b"c%d" % i for i, f in enumerate(futs)))
        chans = [grpc.insecure_channel(target) for _ in range(50)]
        t0 = time.time()
        futs = [unary(c, "/test.Echo/Slow").future(b"300", timeout=20) for c in chans for _ in range(10)]
        res = [f.result() for f in futs]
        el = time.time() - t0
        check("500 concurrent deferred calls on 50 connections overlap", all(r == b"done" for r in res) and el < 5, el)
        for c in chans:
            c.close()

        # HTTP/1.1 on the same port.
        with urllib.request.urlopen("http://%s/health" % target, timeout=5) as r:
            body = r.read()
            check("HTTP/1.1 GET /health", r.status == 200 and json.loads(body) == {"health": "true"}, body)
        hc = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        hc.request("GET", "/metrics")
        r1 = hc.getresponse()
        b1 = r1.read()
        hc.request("GET", "/nope")
        r2 = hc.getresponse()
        r2.read()
        hc.request("HEAD", "/health")
        r3 = hc.getresponse()
        b3 = r3.read()
        check("HTTP/1.1 keep-alive: 200, 404, HEAD", r1.status == 200 and b"rpc_http1_requests" in b1 and r2.status == 404 and r3.status == 200 and b3 == b"", (r1.status, r2.status, r3.status))
        hc.close()

        # Malformed input: each bad client is dropped, others still served.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"\x16\x03\x01garbage-not-http\r\n\r\n")
        s.settimeout(3)
        resp = s.recv(1000)
        check("garbage -> HTTP 400", resp.startswith(b"HTTP/1.1 400"), resp[:40])
        s.close()

        s = raw_h2(port)
        s.sendall(b"\xff" * 64)  # frame with a huge length and unknown type
        frames, eof = read_frames(s, lambda fr: False, timeout=3)
        check("bad HTTP/2 frames -> GOAWAY and close", eof and any(f[0] == H2_GOAWAY for f in frames), (eof, [f[0] for f in frames]))
        s.close()

        s = raw_h2(port)
        s.sendall(frame(H2_HEADERS, END_HEADERS, 7, request_headers(port, b"/test.Echo/Echo")))
        s.sendall(frame(H2_DATA, END_STREAM, 7, grpc_msg(b"ok")))
        frames, eof = read_frames(s, stream_ended(7))
        datas = [f[3] for f in frames if f[0] == H2_DATA and f[2] == 7]
        check("raw h2 client gets its echo", b"".join(datas) == grpc_msg(b"ok"), datas)
        s.close()

        # Broken gRPC: grpc-go's status and words for each (measured against
        # etcd, a grpc-go server).
        grpc_errors(port)

        s = raw_h2(port)
        get = b"".join(hpack_literal(n, v) for n, v in [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/health"), (b":authority", b"x")])
        s.sendall(frame(H2_HEADERS, END_HEADERS | END_STREAM, 1, get))
        frames, eof = read_frames(s, stream_ended(1))
        body = b"".join(f[3] for f in frames if f[0] == H2_DATA and f[2] == 1)
        check("plain GET /health over HTTP/2", body == b'{"health":"true"}', body)
        s.close()

        # Random frame soup (fixed seed): each connection may die, the server may not.
        import random

        rng = random.Random(20261126)
        for i in range(300):
            s = raw_h2(port)
            out = b""
            for j in range(rng.randint(1, 12)):
                kind = rng.random()
                sid = rng.choice([0, 1, 3, 5, 2, 0x7FFFFFFF])
                if kind < 0.3:
                    out += frame(H2_HEADERS, rng.choice([4, 5, 0, 1, 0x24]), sid, request_headers(port, rng.choice([b"/test.Echo/Echo", b"/test.Echo/Bidi", b"/x"])))
                elif kind < 0.6:
                    body = grpc_msg(rng.randbytes(rng.randint(0, 40))) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 40))
                    out += frame(H2_DATA, rng.choice([0, 1, 8]), sid, body)
                else:
                    out += frame(rng.randint(0, 12), rng.randint(0, 255), sid, rng.randbytes(rng.randint(0, 20)))
            try:
                s.sendall(out)
                s.settimeout(0.05)
                s.recv(65536)
            except OSError:
                pass
            s.close()
        check("server survives 300 connections of random frames", echo(b"alive", timeout=5) == b"alive" and proc.poll() is None)

        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(PREFACE[:10])  # half a preface, then nothing
        check("served while a client sits on half a preface", echo(b"p", timeout=3) == b"p")
        s.close()

        # A client that opens a stream and never reads: bounded server memory,
        # other clients served promptly.
        before = rss_kb(proc.pid)
        slow_readers = []
        for i in range(10):
            s = raw_h2(port)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            # Huge windows so only TCP back-pressure can stop the server.
            s.sendall(frame(H2_SETTINGS, 0, 0, struct.pack(">HI", 4, 0x7FFFFFFF)))
            s.sendall(frame(H2_WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF - 65535)))
            s.sendall(frame(H2_HEADERS, END_HEADERS, 1, request_headers(port, b"/test.Echo/Flood")))
            s.sendall(frame(H2_DATA, 0, 1, grpc_msg(b"65536")))
            slow_readers.append(s)
        # Also a python grpc client that opens a flood stream and never iterates.
        flood = ch.stream_stream("/test.Echo/Flood", request_serializer=ident, response_deserializer=ident)
        fcall = flood(iter([b"65536"] + [b""] * 0), timeout=60)
        time.sleep(1.5)
        lat = []
        for i in range(20):
            t0 = time.time()
            echo(b"ping", timeout=5)
            lat.append(time.time() - t0)
        st1 = dict(kv.split("=") for kv in stats(b"", timeout=5).decode().split())
        time.sleep(1.0)
        st2 = dict(kv.split("=") for kv in stats(b"", timeout=5).decode().split())
        after = rss_kb(proc.pid)
        check("others served promptly while 11 clients do not read", max(lat) < 0.5, max(lat))
        check("flood producers see EAGAIN", int(st1["flood_eagain"]) >= 11, st1)
        check("flood stops while nobody reads", int(st2["flood_sent"]) - int(st1["flood_sent"]) < 50, (st1["flood_sent"], st2["flood_sent"]))
        # ASan's quarantine and shadow memory inflate RSS; the bound is looser there.
        limit = 256 * 1024 if os.environ.get("SAN") == "1" else 64 * 1024
        check("server RSS bounded with non-reading clients", after - before < limit, (before, after))
        print("     rss before %d kB, after %d kB, flood_sent %s" % (before, after, st2["flood_sent"]))
        fcall.cancel()
        for s in slow_readers:
            s.close()
        time.sleep(0.5)
        st3 = dict(kv.split("=") for kv in stats(b"", timeout=5).decode().split())
        check("non-reading clients' streams released", int(st3["streams"]) <= 1, st3)

        # A client that grants no HTTP/2 window but keeps asking: replies
        # queue up to the connection's limit, then new streams are refused.
        before = rss_kb(proc.pid)
        s = raw_h2(port)
        s.sendall(frame(H2_SETTINGS, 0, 0, struct.pack(">HI", 4, 0)))  # INITIAL_WINDOW_SIZE 0
        for i in range(100):
            sid = 1 + 2 * i
            s.sendall(frame(H2_HEADERS, END_HEADERS, sid, request_headers(port, b"/test.Echo/Big")))
            s.sendall(frame(H2_DATA, END_STREAM, sid, grpc_msg(b"1048576")))
        s.sendall(frame(6, 0, 0, b"12345678"))  # PING
        frames, eof = read_frames(
            s, lambda fr: any(f[0] == 6 and f[1] & 1 for f in fr) and sum(1 for f in fr if f[0] == H2_RST) >= 50, timeout=5
        )
        refused = sum(1 for f in frames if f[0] == H2_RST and f[3] == struct.pack(">I", 7))
        after = rss_kb(proc.pid)
        check("non-granting client: new streams REFUSED_STREAM past the limit", refused >= 50 and not eof, (refused, eof))
        check("non-granting client: PING still answered", any(f[0] == 6 and f[1] & 1 for f in frames))
        limit = 256 * 1024 if os.environ.get("SAN") == "1" else 48 * 1024
        check("non-granting client: RSS bounded", after - before < limit, (before, after))
        print("     refused %d of 100 1-MiB replies; rss +%d kB" % (refused, after - before))
        s.close()

        # Thousands of idle HTTP/2 connections: accepted, cheap, others served.
        nconn = 3000 if resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 8192 else 500
        before = rss_kb(proc.pid)
        socks = []
        for i in range(nconn):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(PREFACE + frame(H2_SETTINGS, 0, 0))
            socks.append(s)
        deadline = time.time() + 10
        while time.time() < deadline:
            st = dict(kv.split("=") for kv in stats(b"", timeout=5).decode().split())
            if int(st["conns"]) >= nconn:
                break
            time.sleep(0.1)
        t0 = time.time()
        ok = echo(b"busy", timeout=5) == b"busy"
        el = time.time() - t0
        after = rss_kb(proc.pid)
        check("%d idle HTTP/2 connections held" % nconn, int(st["conns"]) >= nconn, st)
        check("served promptly next to %d connections" % nconn, ok and el < 0.5, el)
        print("     %d connections: rss +%d kB (%.1f kB each)" % (nconn, after - before, (after - before) / nconn))
        for s in socks:
            s.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            st = dict(kv.split("=") for kv in stats(b"", timeout=5).decode().split())
            if int(st["conns"]) <= 2:
                break
            time.sleep(0.1)
        check("connections released", int(st["conns"]) <= 2, st)

        # Go grpc (etcdctl 3.4) against a protobuf-c StatusResponse.
        if shutil.which("etcdctl"):
            env = dict(os.environ, ETCDCTL_API="3")
            r = subprocess.run(
                ["etcdctl", "--endpoints=" + target, "--command-timeout=5s", "endpoint", "status", "-w", "json"],
                capture_output=True, text=True, env=env, timeout=30,
            )
            ok = False
            try:
                st = json.loads(r.stdout)[0]["Status"]
                ok = st["version"] == "3.5.0-cairn" and st["dbSize"] == 4096 and st["leader"] == 66 and st["header"]["revision"] == 7
            except Exception as e:  # noqa: BLE001
                st = (r.stdout, r.stderr, e)
            check("etcdctl endpoint status -w json", r.returncode == 0 and ok, st)
            r = subprocess.run(
                ["etcdctl", "--endpoints=" + target, "--command-timeout=5s", "get", "foo"],
                capture_output=True, text=True, env=env, timeout=30,
            )
            check("etcdctl get -> Unimplemented from Go grpc", r.returncode != 0 and "unknown service etcdserverpb.KV" in r.stderr, r.stderr[-300:])
        else:
            check("etcdctl installed", False)

        # Graceful close: an in-flight deferred call completes, then exit 0.
        fut = slow.future(b"800", timeout=10)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        try:
            r = fut.result()
        except grpc.RpcError as e:
            r = e
        check("in-flight call finishes across graceful close", r == b"done", r)
        ch.close()
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        check("server exits 0 after SIGTERM (clean, no leaks under ASan)", rc == 0, rc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    inbound_accounting()
    print("%d checks failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


def grpc_errors(port):
    echo, bidi, gzip = b"/test.Echo/Echo", b"/test.Echo/Bidi", [(b"grpc-encoding", b"gzip")]
    cases = [
        # A message cut short by END_STREAM: io.ErrUnexpectedEOF, which a
        # unary call answers through status.Convert and a stream's RecvMsg
        # turns into INTERNAL; END_STREAM before any message: io.EOF.
        ("unary, truncated message", echo, b"\x00\x00\x00\x00\x64short", (), True, (2, "unexpected EOF")),
        ("unary, truncated prefix", echo, b"\x00\x00\x00", (), True, (2, "unexpected EOF")),
        ("unary, no message", echo, b"", (), True, (2, "EOF")),
        ("stream, truncated message", bidi, b"\x00\x00\x00\x00\x64short", (), True, (13, "unexpected EOF")),
        # The flag byte is judged once the message is in, so a bad flag on a
        # cut message is a cut message.
        ("flag 7", echo, grpc_msg(b"x", 7), (), True, (13, "grpc: received unexpected payload format 7")),
        ("flag 2, truncated", echo, b"\x02\x00\x00\x00\x09x", (), True, (2, "unexpected EOF")),
        ("compressed flag, no grpc-encoding", echo, grpc_msg(b"x", 1), (), True,
         (13, "grpc: compressed flag set with identity or empty encoding")),
        ("compressed flag, identity", echo, grpc_msg(b"x", 1), [(b"grpc-encoding", b"identity")], True,
         (13, "grpc: compressed flag set with identity or empty encoding")),
        ("grpc-encoding identity", echo, grpc_msg(b"plain"), [(b"grpc-encoding", b"identity")], True, (0, "")),
        # A grpc-encoding without a decompressor fails the stream when it
        # opens, compressed message or not, before any message arrives.
        ("unary, grpc-encoding gzip", echo, grpc_msg(b"plain"), gzip, True,
         (12, 'grpc: Decompressor is not installed for grpc-encoding "gzip"')),
        ("stream, grpc-encoding gzip", bidi, b"", gzip, False,
         (12, 'grpc: Decompressor is not installed for grpc-encoding "gzip"')),
        ("grpc-encoding quoted as Go's %q", echo, b"", [(b"grpc-encoding", b'a"b\\c')], False,
         (12, 'grpc: Decompressor is not installed for grpc-encoding "a\\"b\\\\c"')),
        # The owner's decode check (rpc_server_set_decode_check).
        ("unary decode check", b"/test.Echo/Checked", grpc_msg(b"bad:proto: wrong"), (), True,
         (13, "grpc: error unmarshalling request: proto: wrong")),
        ("unary decode check passes", b"/test.Echo/Checked", grpc_msg(b"good"), (), True, (0, "")),
        ("stream decode check", b"/test.Echo/CheckedBidi", grpc_msg(b"bad:unexpected EOF"), (), False,
         (13, "grpc: failed to unmarshal the received message: unexpected EOF")),
        # The service is what precedes the last '/' (grpc-go's handleStream).
        ("path without a method", b"/test.Echo", grpc_msg(b""), (), True,
         (12, 'malformed method name: "/test.Echo"')),
        ("service with a '/'", b"/test.Echo/Echo/x", grpc_msg(b""), (), True, (12, "unknown service test.Echo/Echo")),
    ]
    for name, path, body, hdrs, end, want in cases:
        got = grpc_request(port, path, body, hdrs, end)
        check("grpc error: " + name, got[:2] == want, got)
    # A stream's good messages are served until the one that does not decode.
    s = raw_h2(port)
    s.sendall(frame(H2_HEADERS, END_HEADERS, 1, request_headers(port, b"/test.Echo/CheckedBidi")))
    s.sendall(frame(H2_DATA, 0, 1, grpc_msg(b"one") + grpc_msg(b"bad:two") + grpc_msg(b"three")))
    frames, _ = read_frames(s, stream_ended(1))
    s.close()
    got = grpc_outcome(frames, 1)
    check("stream decode check after a good message",
          got == (13, "grpc: failed to unmarshal the received message: two", grpc_msg(b"one")), got)


def inbound_accounting():
    """A connection's inbound limit bounds what partial messages hold at
    once, not what the connection ever received: with a 1 MiB limit, 300
    requests of 40 KB (each spans several DATA frames) in a row on one
    connection, 12 MB in all, are all served."""
    os.environ["ECHO_CONN_INBOUND"] = str(1 << 20)
    try:
        proc, port = start_server()
    finally:
        del os.environ["ECHO_CONN_INBOUND"]
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    echo = unary(ch, "/test.Echo/Echo")
    try:
        data = os.urandom(40000)
        ok = 0
        for _ in range(300):
            code, msg = status_of(echo, data, timeout=5)
            if code != grpc.StatusCode.OK:
                break
            ok += 1
        check("300 x 40 KB requests on one connection under a 1 MiB inbound limit", ok == 300,
              "%d served, then %s %s" % (ok, code, msg))
    finally:
        ch.close()
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
