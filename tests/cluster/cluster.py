"""Real cairnd processes as a cluster, for the process-level cluster tests.

Member: one cairnd (its own data directory, free ports on loopback or an
address inside a network namespace), with gRPC helpers (put, get, status,
hashkv) that take short timeouts. Cluster: N members bootstrapped with
--initial-cluster, plus waiting for a leader and for the members to
converge. Writer: a thread that writes through several members and records
what was acknowledged. Netns: a bridge, veth pairs and one network namespace
per member, with blackhole-route partitions. Checks: ok/FAIL lines, timings,
exit status. Run with /usr/bin/python3."""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "compat"))
# Members are started without a preexec_fn (see Member.start), but keep
# gRPC's fork support off all the same: its pre-fork handler waits for the
# thread pool to idle and hangs for good while other threads have calls in
# flight ("Waiting for thread pool to idle before forking"). No child of
# ours uses gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
import grpc  # noqa: E402

from etcdpb import Stub, rpc_pb2  # noqa: E402
from servers import BUILD, ROOT, free_port, wait_port  # noqa: E402

CAIRND = os.path.join(ROOT, BUILD, "cairnd")
# Reconnect fast after a member restarts (gRPC's default backoff grows to 2 min).
CHANNEL_OPTS = [("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 300)]
# etcd's errors for a write that a member without quorum cannot commit.
ETCD_UNAVAILABLE = ("etcdserver: no leader", "etcdserver: request timed out",
                    "etcdserver: leader changed",
                    "etcdserver: request timed out, possibly due to previous leader failure")


class Checks:
    """ok/FAIL lines, timing lines, and the exit status."""

    def __init__(self, title):
        self.title = title
        self.failures = []
        self.t0 = time.time()

    def check(self, name, cond, detail=""):
        print(("ok   " if cond else "FAIL ") + name + ("" if cond else "  " + str(detail)),
              flush=True)
        if not cond:
            self.failures.append(name)
        return cond

    def timing(self, name, secs):
        print("time %s: %.3fs" % (name, secs), flush=True)

    def finish(self):
        print("%s: %d failed (%.1fs)" % (self.title, len(self.failures), time.time() - self.t0))
        return 1 if self.failures else 0


def run_test(title, body):
    """Runs body(checks, cleanup) where cleanup is a list of objects with
    close(); closes them in reverse order even on failure; exits."""
    checks = Checks(title)
    cleanup = []
    members = []

    def on_term(signum, frame):  # the runner's time limit: clean up all the same
        raise SystemExit("killed by signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    try:
        body(checks, cleanup)
    except BaseException as e:  # a broken step (or SIGTERM) is a failure with output
        import traceback
        traceback.print_exc()
        checks.check("no exception", False, repr(e))
    finally:
        for obj in cleanup:
            if isinstance(obj, Cluster):
                members.extend(obj.members + obj.removed)
        if checks.failures:
            for m in members:
                print("--- log of %s (last 15 lines)" % m.name)
                print("\n".join(m.log_text().splitlines()[-15:]))
        for obj in reversed(cleanup):
            try:
                obj.close()
            except Exception as e:  # keep closing the rest
                print("cleanup: %r" % e)
        for m in members:  # SAN=1: what the sanitizers reported, at any time
            checks.check("no sanitizer report in the log of %s" % m.name,
                         not m.sanitizer_report, m.sanitizer_report)
    sys.exit(checks.finish())


class Member:
    def __init__(self, name, host="127.0.0.1", netns=None, extra=(), token="cairn-test"):
        self.name = name
        self.host = host
        self.netns = netns
        self.extra = list(extra)
        self.token = token
        self.dir = tempfile.mkdtemp(prefix="cairn-cl-%s-" % name)
        if netns:  # ports are the namespace's own: any fixed ones are free there
            self.client_port, self.peer_port = 2379, 2380
        else:
            self.client_port, self.peer_port = free_port(), free_port()
        self.endpoint = "%s:%d" % (host, self.client_port)
        self.client_url = "http://" + self.endpoint
        self.peer_url = "http://%s:%d" % (host, self.peer_port)
        self.proc = None
        self.channel = None
        self.id = None
        self.log = None
        self.sanitizer_report = ""

    # ---- process
    def start(self, initial_cluster, state="new", wait=True):
        args = [CAIRND, "--name", self.name, "--data-dir", os.path.join(self.dir, "data"),
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster,
                "--initial-cluster-state", state,
                "--initial-cluster-token", self.token] + self.extra
        # SIGKILL when the test process dies (no stray members), set by
        # setpriv rather than a preexec_fn: Python code run between fork and
        # exec in a process with threads (gRPC's, the workload's) can block
        # for good on a lock another thread held at the fork (a soak run hung
        # so, its child stuck on a futex before exec).
        args = ["setpriv", "--pdeathsig", "KILL"] + args
        if self.netns:
            args = ["ip", "netns", "exec", self.netns] + args
        if self.log is None:
            self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_serving()

    def _new_channel(self):
        if self.channel:
            self.channel.close()
        self.channel = grpc.insecure_channel(self.endpoint, options=CHANNEL_OPTS)
        self.kv = Stub(self.channel, "KV")
        self.maint = Stub(self.channel, "Maintenance")
        self.cluster = Stub(self.channel, "Cluster")
        self.watch = Stub(self.channel, "Watch")
        self.lease = Stub(self.channel, "Lease")

    def wait_serving(self, timeout=15.0):
        """Until Status answers (the member listens and serves). The channel
        is made once the port listens: a gRPC channel whose first connection
        was refused keeps failing for seconds."""
        deadline = time.time() + timeout
        if self.netns:
            wait_for("%s listens" % self.name, self._listens, timeout)
        else:
            wait_port(self.client_port, self.proc, timeout)
        self._new_channel()
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s" % (self.name, self.proc.returncode))
            st = self.status(0.3)
            if st is not None:
                self.id = st.header.member_id
                return st
            time.sleep(0.05)
        raise RuntimeError("%s does not serve on %s" % (self.name, self.endpoint))

    def _listens(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (self.name, self.proc.returncode))
        try:
            socket.create_connection((self.host, self.client_port), 0.2).close()
            return True
        except OSError:
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait()

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        """Stops the member (SIGTERM, so that a sanitizer build reports
        leaks; SIGKILL after 5 s), keeps any sanitizer report from its
        log in sanitizer_report, removes its directory."""
        if self.alive():
            self.proc.terminate()
            if self.wait_exit(5.0) is None:
                self.kill()
        text = self.log_text()
        at = min((i for i in (text.find("Sanitizer"), text.find("runtime error:")) if i >= 0),
                 default=-1)
        self.sanitizer_report = text[max(0, at - 200):at + 3000] if at >= 0 else ""
        if self.channel:
            self.channel.close()
        if self.log:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- gRPC
    def status(self, timeout=0.5):
        """StatusResponse, or None if the member does not answer in time."""
        try:
            return self.maint.Status(rpc_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None

    def put(self, key, value, timeout=3.0):
        return self.kv.Put(rpc_pb2.PutRequest(key=_b(key), value=_b(value)), timeout=timeout)

    def get(self, key, prefix=False, serializable=False, timeout=3.0, revision=0):
        key = _b(key)
        req = rpc_pb2.RangeRequest(key=key, serializable=serializable, revision=revision)
        if prefix:
            req.range_end = prefix_end(key)
        return self.kv.Range(req, timeout=timeout)

    def get_dict(self, prefix, serializable=False, timeout=5.0):
        r = self.get(prefix, prefix=True, serializable=serializable, timeout=timeout)
        return {kv.key.decode(): kv.value.decode() for kv in r.kvs}

    def hashkv(self, revision, timeout=3.0):
        return self.maint.HashKV(rpc_pb2.HashKVRequest(revision=revision), timeout=timeout)

    def member_list(self, timeout=3.0):
        return self.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=timeout).members


def start_with_env(m, initial, env, wait=True):
    """Member.start with extra environment for the cairnd process (a
    preloaded shim and its settings)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        m.start(initial, wait=wait)
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def kill_all(members):
    """SIGKILLs every member before reaping any (a power loss or a
    whole-cluster crash, not one member after another)."""
    for m in members:
        if m.alive():
            m.proc.send_signal(signal.SIGKILL)
    for m in members:
        m.kill()


def _b(s):
    return s.encode() if isinstance(s, str) else s


def prefix_end(key):
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[:i + 1])
    return b"\0"


def error_text(e):
    return "%s %s" % (e.code().name, e.details())


def is_etcd_unavailable(e):
    """A write refused the way etcd refuses it without quorum."""
    return (isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.UNAVAILABLE
            and e.details() in ETCD_UNAVAILABLE)


def wait_for(what, fn, timeout, interval=0.05):
    """Polls fn() until it returns a true value; returns (value, seconds).
    Raises on timeout with what and the last value."""
    t0 = time.time()
    last = None
    while time.time() - t0 < timeout:
        try:
            last = fn()
        except grpc.RpcError as e:
            last = error_text(e)
        else:
            if last:
                return last, time.time() - t0
        time.sleep(interval)
    raise TimeoutError("%s: not within %.1fs (last: %r)" % (what, timeout, last))


class Cluster:
    def __init__(self, n, extra=(), hosts=None, netns=None, start=True):
        self.token = "cairn-test-" + secrets.token_hex(4)
        self.extra = list(extra)
        self.members = []
        self.removed = []
        for i in range(n):
            self.members.append(Member("m%d" % i, host=hosts[i] if hosts else "127.0.0.1",
                                       netns=netns[i] if netns else None, extra=extra,
                                       token=self.token))
        if start:
            initial = self.initial_cluster(self.members)
            for m in self.members:  # a bootstrapping member waits for its peers
                m.start(initial, wait=False)
            for m in self.members:
                m.wait_serving()

    @staticmethod
    def initial_cluster(members):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in members)

    def endpoints(self, members=None):
        return ",".join(m.endpoint for m in (members or self.members))

    def alive(self):
        return [m for m in self.members if m.alive()]

    def leader(self, members=None, timeout=0.3):
        """The member that the live members agree leads (all reporting the same
        leader and term, and that member among them), else None."""
        members = members or self.alive()
        sts = [m.status(timeout) for m in members]
        if any(s is None or s.leader == 0 for s in sts):
            return None
        if len({(s.leader, s.raftTerm) for s in sts}) != 1:
            return None
        for m, s in zip(members, sts):
            if s.header.member_id == s.leader:
                return m
        return None

    def wait_leader(self, members=None, timeout=10.0):
        """(leader member, seconds waited)."""
        return wait_for("a leader", lambda: self.leader(members), timeout)

    def wait_new_leader(self, survivors, old, timeout=10.0):
        """(leader other than old that the survivors agree on, seconds),
        polling Status with short timeouts."""
        def new_leader():
            m = self.leader(survivors, timeout=0.2)
            return m if m is not None and m.id != old.id else None
        return wait_for("a new leader among the survivors", new_leader, timeout, 0.02)

    def restart_all(self, state="existing"):
        """SIGKILLs every member, then starts them all again."""
        for m in self.members:
            m.kill()
        initial = self.initial_cluster(self.members)
        for m in self.members:
            m.start(initial, state=state, wait=False)
        for m in self.members:
            m.wait_serving()

    def wait_converged(self, members=None, timeout=20.0):
        """Polls until every member has applied the same index at the same
        revision; then returns (revision, {name: HashKV hash at it})."""
        members = members or self.alive()

        def same():
            sts = [m.status(0.5) for m in members]
            if any(s is None for s in sts):
                return None
            applied = {s.raftAppliedIndex for s in sts}
            revs = {s.header.revision for s in sts}
            return revs.pop() if len(applied) == 1 and len(revs) == 1 else None

        rev, _ = wait_for("members converge", same, timeout)
        return rev, {m.name: m.hashkv(rev).hash for m in members}

    def add(self, name, host="127.0.0.1", netns=None):
        """A new member object (not started, not yet added)."""
        m = Member(name, host=host, netns=netns, extra=self.extra, token=self.token)
        self.members.append(m)
        return m

    def close(self):
        for m in self.members + self.removed:
            m.close()


class Writer(threading.Thread):
    """Writes keys prefix+N, N = 0, 1, ... round-robin through `members`,
    recording every acknowledged key and value; errors and timeouts are
    indeterminate (the write may or may not have happened), counted by code."""

    def __init__(self, members, prefix, timeout=1.0, pause=0.0):
        super().__init__(daemon=True)
        self.members = list(members)
        self.prefix = prefix
        self.timeout = timeout
        self.pause = pause
        self.acked = {}
        self.indeterminate = 0
        self.errors = {}
        self.halt = threading.Event()
        self.last = None  # the last acknowledged (key, value)

    def run(self):
        i = 0
        while not self.halt.is_set():
            m = self.members[i % len(self.members)]
            key, value = "%s%06d" % (self.prefix, i), "v%d-%s" % (i, m.name)
            i += 1
            try:
                m.put(key, value, timeout=self.timeout)
            except grpc.RpcError as e:
                self.indeterminate += 1
                code = "%s %s" % (e.code().name, e.details()[:60])
                self.errors[code] = self.errors.get(code, 0) + 1
            else:
                self.acked[key] = value
                self.last = (key, value)
            if self.pause:
                time.sleep(self.pause)

    def stop(self):
        self.halt.set()
        self.join()


class Reader(threading.Thread):
    """Linearizable reads, round-robin through `members`, of the last write
    that `writer` had acknowledged when the read began: a read that
    succeeds must return it (keys are written once), else it is stale."""

    def __init__(self, members, writer, timeout=1.0):
        super().__init__(daemon=True)
        self.members = list(members)
        self.writer = writer
        self.timeout = timeout
        self.reads = 0
        self.failed = 0
        self.stale = []
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            last = self.writer.last
            if last is None:
                time.sleep(0.01)
                continue
            m = self.members[i % len(self.members)]
            i += 1
            try:
                r = m.get(last[0], timeout=self.timeout)
            except grpc.RpcError:
                self.failed += 1
                continue
            self.reads += 1
            got = r.kvs[0].value.decode() if r.kvs else None
            if got != last[1]:
                self.stale.append((m.name, last[0], last[1], got))

    def stop(self):
        self.halt.set()
        self.join()


def check_reader(checks, name, reader):
    print("info %s: %d linearizable reads, %d failed" % (name, reader.reads, reader.failed))
    checks.check("%s: no linearizable read missed a write acknowledged before it began" % name,
                 not reader.stale, "%d stale, e.g. %s" % (len(reader.stale), reader.stale[:3]))


def check_acked(checks, name, members, writer):
    """Every acknowledged write of writer is read back by a linearizable
    Range on every member; an indeterminate one may be there or not."""
    for m in members:
        got = m.get_dict(writer.prefix, timeout=10.0)
        lost = [k for k, v in writer.acked.items() if got.get(k) != v]
        checks.check("%s: %d acknowledged writes read back on %s" % (name, len(writer.acked),
                                                                      m.name),
                     not lost, "lost %d, e.g. %s" % (len(lost), lost[:5]))
    print("info %s: %d acknowledged, %d indeterminate %s" % (name, len(writer.acked),
                                                             writer.indeterminate, writer.errors))
    odd = {k: n for k, n in writer.errors.items()
           if not k.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED"))}
    checks.check("%s: failed writes failed as etcd's do (UNAVAILABLE or a client timeout)" % name,
                 not odd, odd)


def check_converged(checks, name, cluster, members=None, timeout=20.0):
    """Waits for the members to reach the same applied index and revision and
    checks HashKV there; returns the seconds it took."""
    t0 = time.time()
    try:
        rev, hashes = cluster.wait_converged(members, timeout)
    except TimeoutError as e:
        checks.check(name + ": members converge", False, e)
        return None
    checks.check("%s: HashKV equal at revision %d on %d members" % (name, rev, len(hashes)),
                 len(set(hashes.values())) == 1, hashes)
    return time.time() - t0


def sh(*args, check=True):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stdout.decode(errors="replace")))
    return r


class Netns:
    """n network namespaces joined by a bridge in the root namespace, on a
    private /24 of 10.77.x.0 that no other route uses. Member i lives at
    10.77.x.(i+2) in namespace ns[i]; the root namespace reaches every
    member through the bridge. Names carry a random tag so parallel runs do
    not collide; close() removes everything."""

    def __init__(self, n):
        self.tag = secrets.token_hex(3)
        self.bridge = "cbr" + self.tag
        self.ns = []
        self.veths = []
        self.subnet = self._free_subnet()
        self.ips = ["10.77.%d.%d" % (self.subnet, i + 2) for i in range(n)]
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", "10.77.%d.1/24" % self.subnet, "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i in range(n):
                ns, host, peer = "cairnct-%s-%d" % (self.tag, i), "cv%s%da" % (self.tag, i), \
                    "cv%s%db" % (self.tag, i)
                sh("ip", "netns", "add", ns)
                self.ns.append(ns)
                sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
                self.veths.append(host)
                sh("ip", "link", "set", peer, "netns", ns)
                sh("ip", "link", "set", host, "master", self.bridge)
                sh("ip", "link", "set", host, "up")
                sh("ip", "netns", "exec", ns, "ip", "addr", "add", self.ips[i] + "/24", "dev",
                   peer)
                sh("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
                sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    @staticmethod
    def _free_subnet():
        used = sh("ip", "-4", "addr").stdout.decode() + sh("ip", "-4", "route").stdout.decode()
        for _ in range(100):
            x = secrets.randbelow(250) + 1
            if "10.77.%d." % x not in used:
                return x
        raise RuntimeError("no free 10.77.x.0/24")

    def cut(self, i, j):
        """Drops traffic between members i and j, both ways."""
        sh("ip", "netns", "exec", self.ns[i], "ip", "route", "add", "blackhole", self.ips[j] + "/32")
        sh("ip", "netns", "exec", self.ns[j], "ip", "route", "add", "blackhole", self.ips[i] + "/32")

    def heal(self, i, j):
        sh("ip", "netns", "exec", self.ns[i], "ip", "route", "del", "blackhole", self.ips[j] + "/32")
        sh("ip", "netns", "exec", self.ns[j], "ip", "route", "del", "blackhole", self.ips[i] + "/32")

    def close(self):
        for ns in self.ns:
            sh("ip", "netns", "del", ns, check=False)
        for v in self.veths:
            sh("ip", "link", "del", v, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
