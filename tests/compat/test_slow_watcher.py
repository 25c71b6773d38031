#!/usr/bin/python3
"""test_slow_watcher.py: Watch clients that never read must not make a real
cairnd buffer without bound, and must not slow other clients.

Four raw HTTP/2 connections (tests/h2raw.py framing) each open a Watch on
the prefix "/slow/" and then are never read again. Two announce
SETTINGS_INITIAL_WINDOW_SIZE 16 and never send WINDOW_UPDATE, so HTTP/2
flow control stops the server; two grant huge windows but have a 4 KiB
receive buffer, so only TCP back-pressure stops it. A normal python3-etcd3
client then puts 96 values of 256 KiB (24 MiB) under "/slow/" while a
normal python3-etcd3 watcher on the prefix reads along.

The same workload first runs on a cairnd without slow watchers, as a
control: cairnd's RssAnon grows by about 26 MiB there anyway, from taking
24 MiB of writes (not investigated which of its structures hold it). Checked on the run with slow watchers: RssAnon grows by
less than 48 MiB over its value once the watches exist, and by less than
12 MiB more than in the control (a server that kept every undelivered event
for each slow watcher would hold 4 x 24 MiB = 96 MiB more); on both runs, no
put takes 2 s, the normal watcher gets all 96 events in order, each within
2 s of its put returning, a get still works and cairnd is still running.
ASan's quarantine would hide the difference, so it is turned off for the
servers (as tests/test_watch.py does). At the end the raw clients are read
briefly to show they were still being served (no GOAWAY, RST or EOF).
Run with /usr/bin/python3."""
import os
import socket
import struct
import sys
import threading
import time

import etcd3
# python3-etcd3's bundled protobufs: tests/compat/etcdpb.py's would clash
# with them in one process (both define mvccpb.KeyValue).
from etcd3 import etcdrpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import servers  # noqa: E402
from h2raw import (END_HEADERS, H2_DATA, H2_GOAWAY, H2_HEADERS, H2_RST, H2_SETTINGS,  # noqa: E402
                   H2_WINDOW_UPDATE, PREFACE, frame, grpc_msg, read_frames, request_headers)

N_SLOW = 4
PUTS = 96
VALUE = 256 * 1024
RSS_BOUND_KB = 48 * 1024
EXTRA_BOUND_KB = 12 * 1024
PUT_BOUND_S = 2.0
EVENT_BOUND_S = 2.0
WATCH = b"/etcdserverpb.Watch/Watch"


def rss_anon_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon for %d" % pid)


def slow_watcher(port, tiny_window):
    """A connection with one Watch stream on /slow/ that is never read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small TCP window
    s.connect(("127.0.0.1", port))
    if tiny_window:
        settings = frame(H2_SETTINGS, 0, 0, struct.pack(">HI", 4, 16))  # INITIAL_WINDOW_SIZE 16
    else:
        settings = frame(H2_SETTINGS, 0, 0, struct.pack(">HI", 4, 0x7FFFFFFF)) + \
            frame(H2_WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF - 65535))
    req = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(key=b"/slow/", range_end=b"/slow0"))
    s.sendall(PREFACE + settings + frame(H2_HEADERS, END_HEADERS, 1, request_headers(port, WATCH))
              + frame(H2_DATA, 0, 1, grpc_msg(req.SerializeToString())))
    return s


def server_send_queues(port, clients):
    """cairnd's kernel send queue (bytes) towards each raw client, from /proc/net/tcp."""
    wanted = {c.getsockname()[1]: i for i, c in enumerate(clients)}
    out = [None] * len(clients)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote = parts[1], parts[2]
            lport, rport = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
            if lport == port and rport in wanted:
                out[wanted[rport]] = int(parts[4].split(":")[0], 16)
    return out


def run(n_slow):
    """The workload on a fresh cairnd with n_slow non-reading watchers; returns
    its measurements."""
    srv = servers.Server("cairnd", [])
    slow = []
    try:
        pid = srv.proc.pid
        c = etcd3.client(host="127.0.0.1", port=srv.port, timeout=10)
        value = os.urandom(VALUE)
        c.put("/warm", value)  # request buffers of this size exist before the baseline

        slow = [slow_watcher(srv.port, tiny_window=(i % 2 == 0)) for i in range(n_slow)]

        seen = []  # (receive time, key, mod_revision)
        lock = threading.Lock()

        def on_event(resp):
            now = time.time()
            if isinstance(resp, Exception):
                return
            with lock:
                for ev in resp.events:
                    seen.append((now, ev.key, ev.mod_revision))

        wid = c.add_watch_prefix_callback("/slow/", on_event)
        time.sleep(1.0)  # the slow watches' creates are read and answered
        base = rss_anon_kb(pid)

        peak = [base]
        sampling = [True]

        def sampler():
            while sampling[0]:
                try:
                    peak[0] = max(peak[0], rss_anon_kb(pid))
                except (OSError, RuntimeError):
                    return
                time.sleep(0.02)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()

        put_times, put_done = [], {}
        for i in range(PUTS):
            key = "/slow/k%03d" % i
            t0 = time.time()
            c.put(key, struct.pack(">I", i) + value[4:])
            t1 = time.time()
            put_times.append(t1 - t0)
            put_done[key.encode()] = t1

        deadline = time.time() + 10
        while time.time() < deadline:
            with lock:
                if len(seen) >= PUTS:
                    break
            time.sleep(0.05)
        time.sleep(1.0)  # let anything the server still does with the slow streams show in RSS
        sampling[0] = False
        th.join()

        got, _ = c.get("/slow/k%03d" % (PUTS - 1))
        c.cancel_watch(wid)
        with lock:
            events = list(seen)
        r = {
            "n_slow": n_slow,
            "base": base,
            "peak": peak[0],
            "growth": peak[0] - base,
            "end": rss_anon_kb(pid),
            "put_times": put_times,
            "events": events,
            "delays": [e[0] - put_done[e[1]] for e in events if e[1] in put_done],
            "get_ok": got is not None and got[:4] == struct.pack(">I", PUTS - 1) and len(got) == VALUE,
            "queues": server_send_queues(srv.port, slow),
            "alive": srv.proc.poll() is None,
        }
        # What the raw clients were sent, read only now (reading unblocks the server).
        fates = []
        for s in slow:
            frames, eof = read_frames(s, lambda fr: False, timeout=0.3)
            kinds = set(f[0] for f in frames)
            fates.append("%s%s%s%d B of DATA" % (
                "EOF " if eof else "", "GOAWAY " if H2_GOAWAY in kinds else "",
                "RST " if H2_RST in kinds else "", sum(len(f[3]) for f in frames if f[0] == H2_DATA)))
        r["fates"] = fates

        print("%d non-reading watchers: %d puts x %d KiB = %d MiB under /slow/"
              % (n_slow, PUTS, VALUE // 1024, PUTS * VALUE >> 20))
        print("  RssAnon: baseline %d KiB, peak %d KiB (growth %d KiB), end %d KiB"
              % (r["base"], r["peak"], r["growth"], r["end"]))
        print("  puts: slowest %.3f s, median %.3f s, total %.2f s"
              % (max(put_times), sorted(put_times)[len(put_times) // 2], sum(put_times)))
        print("  normal watcher: %d/%d events, latest %.3f s after its put"
              % (len(events), PUTS, max(r["delays"]) if r["delays"] else -1))
        if n_slow:
            print("  cairnd's kernel send queue to each slow client (bytes): %s" % r["queues"])
            print("  slow clients, read at the end: %s" % "; ".join(fates))
        return r
    finally:
        for s in slow:
            s.close()
        srv.stop()


def main():
    t_start = time.time()
    os.environ["ASAN_OPTIONS"] = "quarantine_size_mb=0:" + os.environ.get("ASAN_OPTIONS", "")
    # The same writes without slow watchers: what cairnd's RssAnon grows by
    # anyway from taking 24 MiB of writes.
    ctl = run(0)
    r = run(N_SLOW)
    failures = []

    def check(name, ok, detail=""):
        if not ok:
            failures.append("%s (%s)" % (name, detail))
        print("%s: %s (%s)" % ("ok" if ok else "FAIL", name, detail))

    extra = r["growth"] - ctl["growth"]
    check("RssAnon growth below %d KiB" % RSS_BOUND_KB, r["growth"] < RSS_BOUND_KB, "%d KiB" % r["growth"])
    check("RssAnon growth within %d KiB of the run without slow watchers" % EXTRA_BOUND_KB,
          extra < EXTRA_BOUND_KB, "%d KiB more" % extra)
    for run_r in (ctl, r):
        tag = "%d slow: " % run_r["n_slow"]
        events, delays, put_times = run_r["events"], run_r["delays"], run_r["put_times"]
        check(tag + "slowest put below %.1f s" % PUT_BOUND_S, max(put_times) < PUT_BOUND_S,
              "%.3f s" % max(put_times))
        check(tag + "normal watcher got every event in order",
              [e[1] for e in events] == [b"/slow/k%03d" % i for i in range(PUTS)] and
              [e[2] for e in events] == sorted(e[2] for e in events), "%d events" % len(events))
        check(tag + "normal watcher's events within %.1f s of their put" % EVENT_BOUND_S,
              bool(delays) and max(delays) < EVENT_BOUND_S, "%.3f s" % (max(delays) if delays else -1))
        check(tag + "get works", run_r["get_ok"])
        check(tag + "cairnd still running", run_r["alive"])
    print("runtime %.1f s" % (time.time() - t_start))
    if failures:
        print("FAILED: %s" % "; ".join(failures))
        sys.exit(1)
    print("slow watcher ok")


if __name__ == "__main__":
    main()
