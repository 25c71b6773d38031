"""Power loss: every acknowledged write survives, LMDB opens cleanly and
cairnd serves, whatever part of the unflushed writes reached the device.

A SIGKILL leaves the page cache alone, so kill tests cannot see what a
power loss does to the file: keep what the last completed flush covered,
plus any subset of the writes issued after it. cairnd runs with
build/crashrec.so preloaded (tests/faults/crashrec.c), which logs every
write to data.mdb (offset, bytes) and every flush of it from the first
write of a fresh data directory on; the test SIGKILLs cairnd under 4
concurrent writers (puts of unique keys, 3-key txns) and rebuilds data.mdb
images from the log:

  durable   the writes the flushes covered, replayed on an empty file
  + a subset of the later writes, cut at page (4 KiB) boundaries, applied
    in issue order: none; all (the file as the kill left it); a random
    half; a random prefix; a random sparse subset; a random half cut at
    512-byte sectors (torn pages).

Before any image is judged, the replay of every logged write must equal
the data.mdb the kill left, byte for byte: the recorder missed nothing.

Each image replaces data.mdb in a copy of the data directory (lock.mdb
removed); then `cairnctl inspect check` (store_check, offline) passes,
cairnd starts on it without the shim and serves, every acknowledged put
and txn is there with its value and mod_revision, and the revision is at
least every acknowledged one; `inspect check` passes again after cairnd
stopped.

The kill comes at a random time, right after an acknowledgement under
load, or right after the acknowledgement of a lone write to an idle
member (nothing follows whose flush would cover it), in turn.

  single member: POWERLOSS_CYCLES (default 5) kill points x
    POWERLOSS_IMAGES (default 6) images.
  three members: POWERLOSS_CLUSTER_CYCLES (default 2) kill points; all
    members SIGKILLed at once; each member's image chosen independently
    (first all flushed-only, with the two followers restarted first, so
    they elect a leader without the old leader's log; then all as left;
    then random, in random orders); every acknowledged write is read back
    (linearizable) on every member, HashKV equal once converged. Acks there
    depend on the followers' durability; the followers' flushes are made
    slow (20 ms) in two cycles of three, which widens the window in which a
    follower has written but not flushed.
SEED fixes the kill points and subsets (printed)."""
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import kvclient  # noqa: E402
from cluster import BUILD, ROOT, Cluster, kill_all, run_test, start_with_env  # noqa: E402

SHIM = os.path.join(ROOT, BUILD, "crashrec.so")
CAIRNCTL = os.path.join(ROOT, BUILD, "cairnctl")
ASAN_WITH_SHIM = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""),
                                        "verify_asan_link_order=0"]))
CYCLES = int(os.environ.get("POWERLOSS_CYCLES", "5"))
IMAGES = int(os.environ.get("POWERLOSS_IMAGES", "6"))
CLUSTER_CYCLES = int(os.environ.get("POWERLOSS_CLUSTER_CYCLES", "2"))
SEED = int(os.environ.get("SEED", str(int(time.time()))))
WRITERS = 4
PAGE = 4096
SECTOR = 512

# ---- the log (crashrec.c, LOG FORMAT)
HDR = struct.Struct("<IIQQQQQ")
MAGIC = 0x43455243
OPEN, WRITE, WRITE_DS, DONE, BARRIER, TRUNCATE = 1, 2, 3, 4, 5, 6


class Write:
    __slots__ = ("seq", "off", "data", "ds", "result")

    def __init__(self, seq, off, data, ds):
        self.seq, self.off, self.data, self.ds, self.result = seq, off, data, ds, None

    def landed(self):
        """The bytes that may have reached the file: what the call wrote,
        or all of it if the kill came during the call (result None)."""
        if self.result is None:
            return self.data
        return self.data[:max(self.result, 0)]


class Log:
    """A parsed crashrec log: writes in issue order, the highest flush
    coverage (writes numbered below `covered` are durable), the barriers'
    times, the opens; a torn last record is ignored."""

    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        self.writes, self.barriers, self.opens, self.truncates = [], [], [], []
        self.inos = set()
        self.torn_tail = False
        by_seq = {}
        pos = 0
        while pos + HDR.size <= len(raw):
            magic, typ, seq, a, b, ino, ts = HDR.unpack_from(raw, pos)
            if magic != MAGIC:
                raise ValueError("crashrec log %s: bad magic at %d" % (path, pos))
            plen = b if typ in (OPEN, WRITE, WRITE_DS) else 0
            if pos + HDR.size + plen > len(raw):
                break
            payload = raw[pos + HDR.size:pos + HDR.size + plen]
            pos += HDR.size + plen
            if typ == OPEN:
                self.opens.append((payload.decode(errors="replace"), a, seq, ino))
            elif typ in (WRITE, WRITE_DS):
                w = Write(seq, a, payload, typ == WRITE_DS)
                self.writes.append(w)
                by_seq[seq] = w
                self.inos.add(ino)
            elif typ == DONE:
                by_seq[seq].result = struct.unpack("<q", struct.pack("<Q", a))[0]
            elif typ == BARRIER:
                self.barriers.append((seq, ts / 1e9))
            elif typ == TRUNCATE:
                self.truncates.append((seq, a))
            else:
                raise ValueError("crashrec log %s: record type %d at %d" % (path, typ, pos))
        self.torn_tail = pos != len(raw)
        self.covered = max((n for n, _ in self.barriers), default=0)

    def durable(self, w):
        return w.result is not None and w.result >= 0 and (w.seq < self.covered or w.ds)

    def in_flight(self):
        return [w for w in self.writes if w.result is None]

    def pending_chunks(self, grain):
        """The unflushed writes cut at `grain`-aligned file offsets:
        [(seq, off, bytes)] in issue order; a power loss keeps any subset."""
        out = []
        for w in self.writes:
            if self.durable(w):
                continue
            data = w.landed()
            at = 0
            while at < len(data):
                off = w.off + at
                n = min(len(data) - at, grain - off % grain)
                out.append((w.seq, off, data[at:at + n]))
                at += n
        return out

    def image(self, chunks):
        """The durable writes plus the given pending chunks, replayed in
        issue order on an empty file."""
        ops = [(w.seq, w.off, w.landed()) for w in self.writes if self.durable(w)]
        ops += chunks
        ops.sort(key=lambda o: o[0])  # stable: a write's chunks keep their order
        f = bytearray()
        for _, off, data in ops:
            end = off + len(data)
            if end > len(f):
                f.extend(bytes(end - len(f)))
            f[off:end] = data
        return bytes(f)


def check_replay(log, path):
    """'' if replaying every logged write gives the file at path, else what
    differs. A write in flight at the kill may have landed in part: its
    range is not compared, and the file may end anywhere inside it."""
    with open(path, "rb") as f:
        disk = bytearray(f.read())
    full = bytearray(log.image(log.pending_chunks(PAGE)))
    fuzzy = [(w.off, w.off + len(w.data)) for w in log.in_flight()]
    shortest = max((w.off + len(w.landed()) for w in log.writes if w.result is not None),
                   default=0)
    if len(disk) != len(full) and not (fuzzy and shortest <= len(disk) <= len(full)):
        return "size %d on disk, %d replayed" % (len(disk), len(full))
    for lo, hi in fuzzy:
        disk[lo:hi] = bytes(len(disk[lo:hi]))
        full[lo:hi] = bytes(len(full[lo:hi]))
    full = full[:len(disk)]
    if disk != full:
        first = next(i for i in range(len(disk)) if disk[i] != full[i])
        return "content differs from byte %d (page %d) on" % (first, first // PAGE)
    return ""


def image_plan(log, rng, n):
    """[(name, chunks)]: n power-loss images over the log's pending writes."""
    pages = log.pending_chunks(PAGE)
    sectors = log.pending_chunks(SECTOR)
    plan = [("none", []), ("all", pages)]
    kinds = ["half", "prefix", "sparse", "torn"]
    i = 0
    while len(plan) < n:
        kind = kinds[i % len(kinds)]
        i += 1
        if kind == "half":
            plan.append(("half", [c for c in pages if rng.random() < 0.5]))
        elif kind == "prefix":
            k = rng.randrange(len(pages) + 1)
            plan.append(("prefix %d/%d" % (k, len(pages)), pages[:k]))
        elif kind == "sparse":
            plan.append(("sparse", [c for c in pages if rng.random() < 0.15]))
        else:
            plan.append(("torn 512B", [c for c in sectors if rng.random() < 0.5]))
    return plan[:n]


# ---- processes

def start_recorded(m, initial, logpath, wait=True):
    """Member.start with crashrec.so preloaded, logging to logpath; its
    flushes are slow while m.dir/slow exists."""
    start_with_env(m, initial, {"LD_PRELOAD": SHIM, "ASAN_OPTIONS": ASAN_WITH_SHIM,
                                "CRASHREC_LOG": logpath,
                                "CRASHREC_SLOW_FILE": os.path.join(m.dir, "slow")}, wait=wait)


def stop(m):
    if m.alive():
        m.proc.terminate()
        if m.wait_exit(5.0) is None:
            m.kill()


def inspect_check(data_dir):
    """'' if `cairnctl inspect check` passes on data_dir, else its output."""
    r = subprocess.run([CAIRNCTL, "inspect", "check", "--data-dir", data_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode(errors="replace").strip()
    return "" if r.returncode == 0 and "store check passed" in out else out or "exit %d" % r.returncode


def find_data_mdb(data_dir):
    for root, _, files in os.walk(data_dir):
        if "data.mdb" in files:
            return os.path.join(root, "data.mdb")
    raise RuntimeError("no data.mdb under %s" % data_dir)


def install_image(crash_dir, data_dir, image):
    """data_dir := a copy of crash_dir with data.mdb replaced by image and
    no lock.mdb."""
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(crash_dir, data_dir)
    path = find_data_mdb(data_dir)
    with open(path, "wb") as f:
        f.write(image)
    lock = os.path.join(os.path.dirname(path), "lock.mdb")
    if os.path.exists(lock):
        os.unlink(lock)


class Writers:
    """WRITERS threads of puts (unique keys) and 3-key txns through the
    given members; acked: [(key, value, header revision)]. After
    kill_on_ack(fn), the next acknowledgement (recorded first) runs fn."""

    def __init__(self, members, prefix):
        self.acked = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.on_ack = None
        self.prefix = prefix
        self.threads = [threading.Thread(target=self.loop, args=(members[i % len(members)],
                                                                 "%sw%d/" % (prefix, i)),
                                         daemon=True) for i in range(WRITERS)]
        for t in self.threads:
            t.start()

    def one(self, m, prefix, j):
        """One put (or, every 5th, txn); True if acknowledged."""
        try:
            if j % 5 == 0:
                pairs = [("%s%d.%d" % (prefix, j, k), "t%d.%d" % (j, k)) for k in range(3)]
                rev = kvclient.put_many(m.kv, pairs, 2.0)
            else:
                pairs = [("%s%d" % (prefix, j), "v%d" % j)]
                rev = kvclient.put(m.kv, pairs[0][0], pairs[0][1], 2.0)
        except (grpc.RpcError, ValueError):
            return False
        with self.lock:
            self.acked += [(k, v, rev) for k, v in pairs]
            fn, self.on_ack = self.on_ack, None
        if fn:
            fn()
        return True

    def loop(self, m, prefix):
        j = 0
        while not self.halt.is_set():
            j += 1
            if not self.one(m, prefix, j):
                time.sleep(0.02)

    def kill_on_ack(self, fn):
        with self.lock:
            self.on_ack = fn

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join()


KILL_MODES = ("at a random time", "right after an ack under load", "right after a lone write")


def crash(ws, members, rng, mode):
    """Runs the writers, then SIGKILLs every member (mode: KILL_MODES).
    A lone write comes after the writers stopped and the members idled:
    nothing follows it that would flush what it depends on."""
    time.sleep(rng.uniform(0.3, 1.5))
    pids = [m.proc.pid for m in members]

    def kill():
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    if mode == KILL_MODES[1]:
        done = threading.Event()
        ws.kill_on_ack(lambda: (kill(), done.set()))
        done.wait(10.0)
    elif mode == KILL_MODES[2]:
        ws.stop()
        time.sleep(rng.uniform(0.2, 0.5))
        ws.on_ack = kill
        for j in range(100):  # until one is acknowledged
            if ws.one(members[j % len(members)], ws.prefix + "lone/", j):
                break
    kill_all(members)
    ws.stop()


def range_all(m, prefix, timeout=10.0):
    """{key: (value, mod_revision)}, header revision (linearizable)."""
    r = m.get(prefix, prefix=True, timeout=timeout)
    return {kv.key.decode(): (kv.value.decode(), kv.mod_revision) for kv in r.kvs}, r.header.revision


def missing(acked, got):
    """Acknowledged writes not in got with their value and mod_revision."""
    return ["%s=%s@%d: %s" % (k, v, rev, got.get(k)) for k, v, rev in acked
            if got.get(k) != (v, rev)]


# ---- single member

def one_cycle(checks, cleanup, rng, c, stats):
    cl = Cluster(1, start=False)
    cleanup.append(cl)
    m = cl.members[0]
    initial = Cluster.initial_cluster(cl.members)
    logpath = os.path.join(m.dir, "crashrec.log")
    data_dir = os.path.join(m.dir, "data")
    start_recorded(m, initial, logpath)
    ws = Writers([m], "p/c%d/" % c)
    mode = KILL_MODES[c % len(KILL_MODES)]
    crash(ws, [m], rng, mode)
    t_kill = time.monotonic()
    acked = ws.acked
    max_acked = max((rev for _, _, rev in acked), default=0)
    crash_dir = os.path.join(m.dir, "crash")
    shutil.copytree(data_dir, crash_dir)
    log = Log(logpath)
    name = "cycle %d (killed %s)" % (c, mode)
    bad = check_replay(log, find_data_mdb(crash_dir))
    checks.check("%s: replaying the %d recorded writes gives the data.mdb the kill left"
                 % (name, len(log.writes)), not bad, bad)
    checks.check("%s: one data.mdb inode, no truncate" % name,
                 len(log.inos) == 1 and not log.truncates, (log.inos, log.truncates))
    checks.check("%s: writes acknowledged before the kill (%d)" % (name, len(acked)), acked)
    pending = log.pending_chunks(PAGE)
    last_barrier = log.barriers[-1][1] if log.barriers else None
    print("info %s: %d writes (%d KiB), %d flushes, %d pages unflushed at the kill (%d writes, "
          "%d in flight), last flush %.1f ms before the kill; %d acks up to revision %d"
          % (name, len(log.writes), sum(len(w.data) for w in log.writes) >> 10,
             len(log.barriers), len(pending), len({s for s, _, _ in pending}),
             len(log.in_flight()), (t_kill - last_barrier) * 1e3 if last_barrier else -1,
             len(acked), max_acked), flush=True)
    for iname, chunks in image_plan(log, rng, IMAGES):
        label = "%s, image %s (%d/%d pending chunks)" % (name, iname, len(chunks),
                                                         len(log.pending_chunks(
                                                             SECTOR if "torn" in iname else PAGE)))
        install_image(crash_dir, data_dir, log.image(chunks))
        out = inspect_check(data_dir)
        ok = checks.check("%s: inspect check passes" % label, not out, out)
        try:
            m.start(initial)
            got, rev = range_all(m, "p/c%d/" % c)
        except (RuntimeError, grpc.RpcError) as e:
            checks.check("%s: cairnd starts and serves" % label, False,
                         "%r; log: %s" % (e, m.log_text()[-600:]))
            stop(m)
            stats["images"] += 1
            stats["bad"] += 1
            continue
        lost = missing(acked, got)
        ok &= checks.check("%s: all %d acknowledged writes present (value, mod_revision)"
                           % (label, len(acked)), not lost, "%d missing, e.g. %s"
                           % (len(lost), lost[:3]))
        ok &= checks.check("%s: revision %d >= every acknowledged one (%d)"
                           % (label, rev, max_acked), rev >= max_acked)
        stop(m)
        out = inspect_check(data_dir)
        ok &= checks.check("%s: inspect check passes after cairnd ran on it" % label, not out, out)
        stats["images"] += 1
        stats["bad"] += 0 if ok else 1
        stats["revs"].append(rev - max_acked)
    stats["acked"] += len(acked)
    cl.close()
    cleanup.remove(cl)


def single(checks, cleanup):
    rng = random.Random(SEED)
    stats = {"images": 0, "bad": 0, "acked": 0, "revs": []}
    t0 = time.time()
    for c in range(CYCLES):
        one_cycle(checks, cleanup, rng, c, stats)
    print("info single member: %d kill points, %d images (%d bad), %d acknowledged writes, "
          "image revision - last acked revision in [%d, %d], %.1fs, seed %d"
          % (CYCLES, stats["images"], stats["bad"], stats["acked"], min(stats["revs"], default=0),
             max(stats["revs"], default=0), time.time() - t0, SEED), flush=True)


# ---- three members

def cluster_cycle(checks, cleanup, rng, c):
    cl = Cluster(3, start=False)
    cleanup.append(cl)
    initial = Cluster.initial_cluster(cl.members)
    logs = [os.path.join(m.dir, "crashrec.log") for m in cl.members]
    for m, lp in zip(cl.members, logs):
        start_recorded(m, initial, lp, wait=False)
    for m in cl.members:
        m.wait_serving()
    cl.wait_leader()
    ws = Writers(cl.members, "p/k%d/" % c)
    lead = cl.leader(timeout=0.2)
    mode = KILL_MODES[(2 - c) % len(KILL_MODES)]  # the lone write first, then after an ack
    # Slow follower disks (20 ms a flush) but for every third cycle: a
    # follower that reported an append before flushing it would leave a
    # wide window in which the leader acknowledged what no follower holds
    # durably.
    slow = c % 3 != 2 and lead is not None
    for m in cl.members:
        if slow and m is not lead:
            open(os.path.join(m.dir, "slow"), "w").close()
    crash(ws, cl.members, rng, mode)
    acked = ws.acked
    max_acked = max((rev for _, _, rev in acked), default=0)
    name = "3 members, cycle %d (killed %s%s)" % (c, mode, ", slow followers" if slow else "")
    checks.check("%s: writes acknowledged before the kill (%d)" % (name, len(acked)), acked)
    parsed = []
    for m, lp in zip(cl.members, logs):
        crash_dir = os.path.join(m.dir, "crash")
        shutil.copytree(os.path.join(m.dir, "data"), crash_dir)
        log = Log(lp)
        bad = check_replay(log, find_data_mdb(crash_dir))
        checks.check("%s: %s: replay of %d recorded writes gives the data.mdb the kill left"
                     % (name, m.name, len(log.writes)), not bad, bad)
        parsed.append((crash_dir, log, image_plan(log, rng, IMAGES)))
        print("info %s: %s: %d writes, %d flushes, %d pages unflushed"
              % (name, m.name, len(log.writes), len(log.barriers),
                 len(log.pending_chunks(PAGE))), flush=True)
    n_images = 0
    for i in range(IMAGES):
        # Each member's image is chosen independently, and the members come
        # back in any order: any two make a quorum, and the third must then
        # follow them. First every member's flushed state alone (the most
        # undone) with the two that followed at the kill first: they elect
        # a leader without the old one's log. Then every member's file as
        # the kill left it, all at once; then random images, orders.
        others = [m for m in cl.members if m is not lead]
        if i == 0:
            picks = [plan[0] for _, _, plan in parsed]
            first = others[:2]
        elif i == 1:
            picks = [plan[1] for _, _, plan in parsed]
            first = cl.members
        else:
            picks = [rng.choice(plan) for _, _, plan in parsed]
            first = rng.choice([cl.members, rng.sample(cl.members, 2)])
        label = "%s, images %s, %s first" % (name, "/".join(p[0] for p in picks),
                                             "+".join(m.name for m in first))
        for m, (crash_dir, log, _), (_, chunks) in zip(cl.members, parsed, picks):
            data_dir = os.path.join(m.dir, "data")
            install_image(crash_dir, data_dir, log.image(chunks))
            out = inspect_check(data_dir)
            checks.check("%s: %s: inspect check passes" % (label, m.name), not out, out)
        try:
            for m in first:
                m.start(initial, wait=False)
            for m in first:
                m.wait_serving()
            cl.wait_leader(members=first, timeout=20.0)
            rest = [m for m in cl.members if m not in first]
            for m in rest:
                m.start(initial)
            cl.wait_leader(timeout=20.0)
            for m in cl.members:
                got, rev = range_all(m, "p/k%d/" % c, timeout=20.0)
                lost = missing(acked, got)
                checks.check("%s: on %s all %d acknowledged writes present, revision %d >= %d"
                             % (label, m.name, len(acked), rev, max_acked),
                             not lost and rev >= max_acked,
                             "%d missing, e.g. %s" % (len(lost), lost[:3]))
            rev, hashes = cl.wait_converged(timeout=30.0)
            checks.check("%s: HashKV equal at %d" % (label, rev), len(set(hashes.values())) == 1,
                         hashes)
        except (RuntimeError, TimeoutError, grpc.RpcError) as e:
            checks.check("%s: the cluster restarts, serves and converges" % label, False,
                         repr(e))
        for m in cl.members:
            stop(m)
        n_images += 1
    print("info %s: %d image sets, %d acknowledged writes up to revision %d"
          % (name, n_images, len(acked), max_acked), flush=True)
    cl.close()
    cleanup.remove(cl)


def whole_cluster(checks, cleanup):
    rng = random.Random(SEED + 1)
    for c in range(CLUSTER_CYCLES):
        cluster_cycle(checks, cleanup, rng, c)


def body(checks, cleanup):
    print("seed %d" % SEED, flush=True)
    checks.check("shim built", os.path.exists(SHIM), SHIM)
    single(checks, cleanup)
    whole_cluster(checks, cleanup)


if __name__ == "__main__":
    run_test("powerloss", body)
