"""One nemesis run: a 3- or 5-member cluster in network namespaces
(tests/cluster/cluster.py's Cluster and Netns), concurrent clients doing
linearizable reads, puts, deletes, two-key txns and CAS transactions
(compare on value or on mod_revision) on a few keys, a watcher with prev_kv
on every member, and a nemesis that, one fault at a time:
  kill-leader, kill-follower, kill-majority  SIGKILL, then restart
  kill-all          SIGKILL every member, restart them all
  pause-leader, pause-member                 SIGSTOP for a while, SIGCONT
  isolate-leader, isolate-minority           both ways, blackhole routes
  oneway            drops traffic from member A to member B only (a
                    blackhole route to B in A's namespace; B still reaches
                    A). Over TCP this stalls both directions of every
                    connection between them (A's acks and replies are
                    dropped too), but each side sees it differently: A's
                    sends fail at once, B's time out.
  bridge            two halves cut apart but for one member that reaches
                    both (Jepsen's bridge): with 3 members A - B - C, A and
                    C do not hear each other; each half is a minority, the
                    bridge can lead them all or lose its leadership to one
                    side that sees a majority only through it
  replace-member    MemberRemove of a follower (it exits), MemberAdd of a
                    fresh voter with a new name and data dir in a spare
                    namespace, started with --initial-cluster-state
                    existing (it catches up from a snapshot)
  replace-leader    the same with the leader: it commits its own removal,
                    steps down and exits; the others elect a new leader,
                    which adds the fresh voter
  learner-promote   replace-member, but the fresh member is added as a
                    learner (MemberAdd isLearner) and promoted to a voter
                    (MemberPromote, retried while the leader says it is
                    not in sync yet) before clients use it
  compact           Compaction below what every watcher has seen
Everything is healed, resumed and restarted before the next fault. Then
every checker of checker.py judges the history. Only loopback, the test's
own bridge, veths and namespaces are touched.

run(seconds, seed, members=3) -> dict of totals and verdicts (violations
listed).
  python3 tests/faults/nemesis.py SECONDS
    RUN_SECONDS (60), SEED, MEMBERS (sizes, default 3,5: runs alternate),
    FAULTS (comma-separated subset of Nemesis.FAULTS, default all)"""
import collections
import multiprocessing
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import grpc  # noqa: E402

import checker  # noqa: E402
import kvclient  # noqa: E402
from cluster import Cluster, Member, Netns, sh  # noqa: E402
from etcdpb import rpc_pb2  # noqa: E402

KEYS = ["n/k%d" % i for i in range(3)]
PREFIX = "n/"
OP_TIMEOUT = 1.5
# fault kinds that replace a member (main() counts them together and apart)
REPLACEMENTS = ("replace-member", "replace-leader", "learner-promote")
SNAPSHOT_FLAGS = ["--snapshot-count", "300", "--experimental-snapshot-catchup-entries", "100"]


class Worker(threading.Thread):
    """Random reads, writes and CAS on KEYS through one member. Values are
    unique ("w<id>-<n>"). A CAS on mod_revision reads first (recorded) and
    compares on the mod_revision read; it is recorded as a CAS on the value
    read with it (values are unique, so the two compares are equivalent)."""

    def __init__(self, wid, members, rec, rng, halt):
        super().__init__(daemon=True)
        self.wid, self.members, self.rec, self.rng, self.halt = wid, members, rec, rng, halt
        self.n = 0
        self.seen = {}  # key -> (value, mod_revision) last read

    def value(self):
        self.n += 1
        return "w%d-%d" % (self.wid, self.n)

    def run(self):
        rec, rng = self.rec, self.rng
        while not self.halt.is_set():
            key = rng.choice(KEYS)
            r = rng.random()
            # the member in this worker's slot (a replaced member's slot
            # holds its successor) and its current stub (renewed on restart)
            kv = self.members[self.wid % len(self.members)].kv
            if r < 0.35:
                op = checker.Op("read", key)

                def fn():
                    v, mod, rev = kvclient.get(kv, key, OP_TIMEOUT)
                    self.seen[key] = (v, mod)
                    return v, rev
                rec.run(op, fn)
            elif r < 0.65:
                v = self.value()
                op = checker.Op("write", key, value=v)
                rec.run(op, lambda: (None, kvclient.put(kv, key, v, OP_TIMEOUT)))
            elif r < 0.70:
                # delete: a write of "absent" for the register model
                op = checker.Op("write", key, value=None)
                rec.run(op, lambda: (None, kvclient.delete(kv, key, OP_TIMEOUT)))
            elif r < 0.78:
                # one txn writing two keys: one revision, two events
                k2 = rng.choice([k for k in KEYS if k != key])
                v1, v2 = self.value(), self.value()
                op = checker.Op("write", key, value=v1)
                op2 = checker.Op("write", k2, value=v2)
                rec.run_multi([op, op2], lambda: (None, kvclient.put_many(
                    kv, [(key, v1), (k2, v2)], OP_TIMEOUT)))
            elif r < 0.88 or key not in self.seen:
                exp = self.seen.get(key, (None, 0))[0]
                v = self.value()
                op = checker.Op("cas", key, value=v, expect=exp)

                def fn():
                    ok, obs, rev = kvclient.cas(kv, key, exp, v, OP_TIMEOUT)
                    return (ok, obs), rev
                rec.run(op, fn)
            else:
                exp, mod = self.seen[key]
                v = self.value()
                op = checker.Op("cas", key, value=v, expect=exp)

                def fn():
                    ok, obs, rev = kvclient.cas(kv, key, None, v, OP_TIMEOUT, mod_revision=mod)
                    return (ok, obs), rev
                rec.run(op, fn)
            if op.ok is None:
                time.sleep(0.05)  # a member down: do not spin


class Nemesis:
    FAULTS = ["kill-leader", "kill-follower", "kill-majority", "kill-all", "pause-leader",
              "pause-member", "isolate-leader", "isolate-minority", "oneway", "bridge", "replace-member",
              "replace-leader", "learner-promote", "compact"]

    def __init__(self, cl, net, rng, log, on_replace=None, faults=None):
        self.cl, self.net, self.rng, self.log = cl, net, rng, log
        self.faults = faults or self.FAULTS
        self.on_replace = on_replace  # (old member, new member) after a replacement
        self.counts = {}
        self.cuts = []  # (slot from, slot to): blackhole route to `to` in `from`'s namespace
        self.stopped = []
        self.replaced = 0

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1
        self.log("nemesis: %s" % what)

    def slot(self, m):
        """The namespace (and address) of member m."""
        return self.net.ns.index(m.netns)

    def leader(self):
        return self.cl.leader(timeout=0.3)

    def restart(self, ms):
        # A member keeps its configuration in its data: the flags matter
        # only for one that has none yet (a replacement killed before it
        # wrote anything joins again).
        initial = Cluster.initial_cluster(self.cl.members)
        for m in ms:
            if not m.alive():
                m.start(initial, state=getattr(m, "state", "new"), wait=False)
        for m in ms:
            m.wait_serving(timeout=30.0)

    def cut(self, i, j):
        """Drops packets from slot i to slot j (one way)."""
        sh("ip", "netns", "exec", self.net.ns[i], "ip", "route", "add", "blackhole",
           self.net.ips[j] + "/32")
        self.cuts.append((i, j))

    def partition(self, group):
        """Cuts every member in group from every member outside it."""
        slots = [self.slot(m) for m in group]
        others = [self.slot(m) for m in self.cl.members if m not in group]
        for i in slots:
            for j in others:
                self.cut(i, j)
                self.cut(j, i)

    def heal(self):
        for i, j in self.cuts:
            sh("ip", "netns", "exec", self.net.ns[i], "ip", "route", "del", "blackhole",
               self.net.ips[j] + "/32", check=False)
        self.cuts = []

    def cont(self):
        for m in self.stopped:
            if m.alive():
                m.proc.send_signal(signal.SIGCONT)
        self.stopped = []

    def replace(self, lead, victim, learner=False):
        """MemberRemove victim (through the leader, which may be the victim:
        it commits its own removal and steps down), then MemberAdd a fresh
        member in the spare namespace and start it with
        --initial-cluster-state existing; a learner is promoted before it
        takes the victim's slot. False (and the cluster as it was, or one
        member short, logged) if the cluster refused; the run goes on. A
        learner never promoted on a healed cluster raises (the run fails)."""
        members = self.cl.members
        spare = [i for i in range(len(self.net.ns))
                 if i not in [self.slot(m) for m in members]][0]
        via = lead
        try:
            via.cluster.MemberRemove(rpc_pb2.MemberRemoveRequest(ID=victim.id), timeout=5.0)
        except grpc.RpcError as e:
            self.log("replace: MemberRemove %s refused: %s %s" % (victim.name, e.code(),
                                                                 e.details()))
            return False
        if victim.wait_exit(10.0) is None:
            self.log("replace: removed %s did not exit in 10 s: killed" % victim.name)
            victim.kill()
        self.replaced += 1
        new = Member("r%d" % self.replaced, host=self.net.ips[spare], netns=self.net.ns[spare],
                     extra=self.cl.extra, token=self.cl.token)
        new.state = "existing"
        idx = members.index(victim)
        self.cl.removed.append(victim)
        joined = members[:idx] + [new] + members[idx + 1:]
        deadline = time.time() + 15.0
        while True:
            try:
                via = self.cl.leader(timeout=0.5) or via
                added = via.cluster.MemberAdd(rpc_pb2.MemberAddRequest(
                    peerURLs=[new.peer_url], isLearner=learner), timeout=5.0)
                break
            except (grpc.RpcError, AttributeError) as e:
                if time.time() > deadline:
                    self.log("replace: MemberAdd %s kept failing: %s" % (new.name, e))
                    members.remove(victim)  # one member short from now on
                    new.close()
                    return False
                time.sleep(0.3)
        new.start(Cluster.initial_cluster(joined), state="existing", wait=False)
        self.cl.removed.append(new)  # closed with the cluster even if it never serves
        new.wait_serving(timeout=30.0)
        if learner:
            self.promote(new, added.member.ID)
        self.cl.removed.remove(new)
        members[idx] = new  # the workers of the slot move to it once it serves
        self.log("replace: %s (slot %d) replaced by %s%s (slot %d), id %x"
                 % (victim.name, self.slot(victim), "learner " if learner else "", new.name,
                    spare, new.id))
        if self.on_replace:
            self.on_replace(victim, new)
        return True

    def promote(self, new, mid, timeout=30.0):
        """MemberPromote of learner `new` (member id mid) through the
        leader until it is accepted; while the learner catches up the
        leader refuses with etcd's "not in sync" error. The learner then
        reports itself a voter."""
        t0 = time.time()
        refusals = collections.Counter()
        while True:
            via = self.cl.leader([m for m in self.cl.members if m.alive()], timeout=0.5)
            try:
                if via is None:
                    raise RuntimeError("no leader")
                via.cluster.MemberPromote(rpc_pb2.MemberPromoteRequest(ID=mid), timeout=5.0)
                break
            except (grpc.RpcError, RuntimeError) as e:
                why = "%s %s" % (e.code().name, e.details()) if isinstance(e, grpc.RpcError) \
                    else str(e)
                refusals[why] += 1
                if time.time() - t0 > timeout:
                    raise RuntimeError("learner %s not promoted in %.0f s: %s"
                                       % (new.name, timeout, dict(refusals)))
                time.sleep(0.2)
        self.log("promote: learner %s promoted after %.1f s (refused: %s)"
                 % (new.name, time.time() - t0, dict(refusals) or "never"))
        st = None
        for _ in range(50):
            st = new.status(0.5)
            if st is not None and not st.isLearner:
                return
            time.sleep(0.1)
        raise RuntimeError("promoted %s still reports isLearner (%s)" % (new.name, st))

    def one(self, watch_end, compact_kv):
        rng = self.rng
        members = self.cl.members
        n = len(members)
        fault = rng.choice(self.faults)
        lead = self.leader()
        if fault in ("kill-leader", "pause-leader", "isolate-leader") and lead is None:
            fault = fault.replace("leader", "follower" if fault.startswith("kill") else "member") \
                if not fault.startswith("isolate") else "isolate-minority"
        if fault in REPLACEMENTS and (lead is None or n < 3):
            fault = "kill-all"
        if fault == "compact":
            # below what every watcher has seen, so no watcher needs a
            # compacted revision; compaction still races reads and writes
            rev = watch_end() - 20
            if rev > 1:
                try:
                    kvclient.compact(compact_kv(), rev, 3.0)
                    self.log("compact at %d" % rev)
                    self.count("compact")
                except grpc.RpcError as e:
                    self.log("compact at %d failed: %s" % (rev, e.code()))
            return rng.uniform(0.5, 1.5)
        if fault in REPLACEMENTS:
            victim = lead if fault == "replace-leader" else \
                rng.choice([m for m in members if m is not lead])
            if self.replace(lead, victim, learner=fault == "learner-promote"):
                self.count(fault)
            else:
                self.count("replace-refused")
            return rng.uniform(0.5, 1.5)
        if fault.startswith("kill"):
            if fault == "kill-leader":
                victims = [lead]
            elif fault == "kill-follower":
                victims = [rng.choice([m for m in members if m is not lead])]
            elif fault == "kill-all":
                victims = list(members)
            else:
                victims = rng.sample(members, n // 2 + 1)
            for m in victims:
                m.kill()
            self.count(fault)
            time.sleep(rng.uniform(0.5, 2.5))
            self.restart(victims)
            return rng.uniform(0.5, 1.5)
        if fault.startswith("pause"):
            m = lead if fault == "pause-leader" else rng.choice(members)
            m.proc.send_signal(signal.SIGSTOP)
            self.stopped.append(m)
            self.count(fault)
            time.sleep(rng.uniform(0.5, 3.0))
            self.cont()
            return rng.uniform(0.5, 1.5)
        if fault == "oneway":
            # half the time from or to the leader: its heartbeats or its
            # acknowledgements are the ones lost
            a = lead if lead is not None and rng.random() < 0.5 else rng.choice(members)
            b = rng.choice([m for m in members if m is not a])
            if rng.random() < 0.5:
                a, b = b, a
            self.cut(self.slot(a), self.slot(b))
            self.log("oneway: %s -/-> %s" % (a.name, b.name))
        elif fault == "bridge":
            # half the time the leader is the bridge, half the time in a half
            order = rng.sample(members, n)
            if lead is not None and rng.random() < 0.5:
                order.remove(lead)
                order.insert(0, lead)
            bridge, rest = order[0], order[1:]
            left, right = rest[:len(rest) // 2], rest[len(rest) // 2:]
            for a in left:
                for b in right:
                    self.cut(self.slot(a), self.slot(b))
                    self.cut(self.slot(b), self.slot(a))
            self.log("bridge: %s | %s | %s" % (",".join(m.name for m in left), bridge.name,
                                               ",".join(m.name for m in right)))
        elif fault == "isolate-leader":
            self.partition([lead])
        else:
            self.partition(rng.sample(members, rng.randint(1, (n - 1) // 2)))
        self.count(fault)
        time.sleep(rng.uniform(1.0, 4.0))
        self.heal()
        return rng.uniform(0.5, 1.5)


def run(seconds, seed, members=3, workers=6, log=print, faults=None):
    rng = random.Random(seed)
    res = {"seed": seed, "members": members, "violations": [], "ops": 0}
    net = Netns(members + 1)  # the last namespace is the spare for a replacement
    cl = nem = None
    halt = threading.Event()
    active = {}  # member name -> (its watcher, its stop event)
    threads = []
    try:
        # small snapshot counts: members restarted or cut off catch up from
        # snapshots (installed under live watchers) as well as from the log
        cl = Cluster(members, hosts=net.ips[:members], netns=net.ns[:members],
                     extra=SNAPSHOT_FLAGS)
        cl.wait_leader(timeout=20.0)
        rec = kvclient.Recorder()
        # every revision after this one is a mutation of the run; watchers
        # start from the first (fresh cluster: nothing to skip)
        first_rev = cl.members[0].status().header.revision + 1
        wrecs = []  # every watcher, judged at the end

        def watch(m):
            wr = checker.WatchRecord("watch@" + m.name, key=PREFIX, prefix=True, start=first_rev,
                                     prev_kv=True)
            stop = threading.Event()
            t = threading.Thread(target=kvclient.watch_record,
                                 args=(m.endpoint, wr, stop, PREFIX, first_rev),
                                 daemon=True)
            t.start()
            wrecs.append(wr)
            active[m.name] = (wr, stop)
            threads.append(t)

        def on_replace(old, new):
            # the removed member's watcher keeps what it saw (judged over
            # what it covered); the new member's starts at first_rev, i.e.
            # replays the history it got with its snapshot, or is told what
            # was compacted and resumes there
            active.pop(old.name)[1].set()
            watch(new)

        for m in cl.members:
            watch(m)
        ws = [Worker(i, cl.members, rec, random.Random(seed * 100 + i), halt)
              for i in range(workers)]
        for w in ws:
            w.start()
        nem = Nemesis(cl, net, rng, log, on_replace=on_replace, faults=faults)
        t_end = time.time() + seconds
        time.sleep(1.0)
        while time.time() < t_end:
            pause = nem.one(lambda: min((w.end or 0) for w, _ in active.values()),
                            lambda: rng.choice([m for m in cl.members if m.alive()]).kv)
            time.sleep(min(pause, max(0, t_end - time.time())))
        # heal everything, let the clients run a little on a healthy cluster
        nem.heal()
        nem.cont()
        nem.restart(cl.members)
        cl.wait_leader(timeout=30.0)
        time.sleep(1.0)
        halt.set()
        for w in ws:
            w.join()
        # final linearizable reads of every key on every member
        for m in cl.members:
            for key in KEYS:
                op = checker.Op("read", key)
                rec.run(op, lambda: (lambda v: (v[0], v[2]))(kvclient.get(m.kv, key, 10.0)))
                if op.ok is not True:
                    res["violations"].append("final read of %s on %s failed: %s"
                                             % (key, m.name, op.result))
        final_rev, hashes = cl.wait_converged(timeout=30.0)
        if len(set(hashes.values())) != 1:
            res["violations"].append("HashKV differs at revision %d: %s" % (final_rev, hashes))
        # the current members' watchers catch up to the final revision
        current = [w for w, _ in active.values()]
        deadline = time.time() + 20
        while time.time() < deadline and any((w.end or 0) < final_rev for w in current):
            time.sleep(0.1)
        for _, stop in active.values():
            stop.set()
        for t in threads:
            t.join(5)
        for w in current:
            if (w.end or 0) < final_rev:
                res["violations"].append("%s stopped at %s, final revision %d"
                                         % (w.name, w.end, final_rev))
        t_check = time.time()
        res.update(judge(rec.ops, wrecs, first_rev, final_rev))
        res["violations"] += compacted_watch(cl, first_rev, final_rev,
                                             checker.reference_history(wrecs, []))
        res["check_secs"] = time.time() - t_check
    except Exception as e:  # a member that never serves, no convergence: a failed run
        import traceback
        res["violations"].append("run aborted: %s: %s" % (type(e).__name__, e))
        res["traceback"] = traceback.format_exc()
    finally:
        halt.set()
        for _, stop in active.values():
            stop.set()
        if nem:
            res["nemesis"] = nem.counts
        if cl:
            for m in cl.members:  # nothing stays stopped
                if m.alive():
                    m.proc.send_signal(signal.SIGCONT)
            everyone = cl.members + cl.removed
            res.setdefault("logs", {m.name: m.log_text()[-3000:] for m in everyone})
            res["snapshots_installed"] = sum(m.log_text().count("installing snapshot from leader")
                                             for m in everyone)
            cl.close()
        net.close()
    return res


def compacted_watch(cl, first_rev, final_rev, hist):
    """After the run: compact at final_rev - 5; a watch from first_rev on
    every member is cancelled with compact_revision = final_rev - 5, and a
    watch from the compact revision gets the history `hist` from there,
    except a delete at the compact revision itself (compaction removes a
    tombstone that is its key's last revision; etcd 3.5 does the same)."""
    bad = []
    crev = final_rev - 5
    if crev <= first_rev:
        return bad
    kvclient.compact(cl.members[0].kv, crev, 5.0)
    for m in cl.members:
        # The Compact call returns once the member it went to applied it;
        # another may apply it later (etcd's too): a watch there started
        # before that streams the history instead (seen once, on a member
        # catching up by snapshot under heavy load).
        deadline = time.time() + 15.0
        while not kvclient.compacted_at(m.kv, crev, 2.0) and time.time() < deadline:
            time.sleep(0.1)
        if not kvclient.compacted_at(m.kv, crev, 2.0):
            bad.append("compaction at %d not applied on %s within 15 s" % (crev, m.name))
            continue
        for start, want in ((first_rev, "compacted"), (crev, "events")):
            stop = threading.Event()
            wr = checker.WatchRecord("late@" + m.name, key=PREFIX, start=start)
            t = threading.Thread(target=kvclient.watch_record, daemon=True,
                                 args=(m.endpoint, wr, stop, PREFIX, start),
                                 kwargs={"on_event": lambda evs: stop.set()
                                         if evs[-1].mod >= final_rev else None})
            t.start()
            t.join(5.0)
            stop.set()
            t.join(2.0)
            if want == "compacted":
                c = wr.compacted[0][1] if wr.compacted else None
                if c != crev:
                    bad.append("watch from %d on %s after compaction at %d: compact_revision %s"
                               % (start, m.name, crev, c))
            else:
                got = {(e.mod, e.key) for r in wr.responses for e in r}
                want = {k for k, e in hist.items()
                        if k[0] > crev or (k[0] == crev and e.type == "PUT")}
                if got != want:
                    bad.append("watch from the compact revision %d on %s: missing %s, extra %s"
                               % (crev, m.name, sorted(want - got)[:5], sorted(got - want)[:5]))
    return bad


def canary(ops):
    """Plants a stale read into the real history: on the busiest key, an
    acknowledged put w, a later acknowledged put w2 invoked after w
    returned, and a read right after w2 returned that returns w's value.
    The checker must reject it (True), else the run's verdict means little.
    Planted a quarter into the history (the search must exhaust everything
    before the planted read). None if the history has no such pair or the
    search budget ran out."""
    keys = collections.Counter(o.key for o in ops)
    if not keys:
        return None
    key = keys.most_common(1)[0][0]
    puts = sorted((o for o in ops if o.key == key and o.ok is True and o.value is not None and
                   (o.f == "write" or (o.f == "cas" and o.result[0]))), key=lambda o: o.complete)
    for w in puts[len(puts) // 4:]:
        w2 = next((o for o in puts if o.invoke > w.complete), None)
        if w2 is None:
            return None
        t = w2.complete + 1e-6
        stale = checker.Op("read", key, ok=True, result=w.value, invoke=t, complete=t + 1e-6)
        st = {}
        bad = checker.check_linearizable([o for o in ops if o.key == key] + [stale], stats=st)
        return True if bad else (None if st["unknown_keys"] else False)
    return None


def judge(ops, wrecs, first_rev, final_rev):
    out = {"violations": [], "ops": len(ops),
           "ok": sum(1 for o in ops if o.ok is True),
           "indeterminate": sum(1 for o in ops if o.ok is None)}
    v = out["violations"]
    st = {}
    lin = checker.check_linearizable(ops, stats=st)
    out["linearizable"] = "unknown" if st["unknown_keys"] and not lin else (not lin)
    out["lin_steps"] = st["steps"]
    v += lin
    if st["unknown_keys"]:
        v.append("linearizability undecided (search budget) for keys %s" % st["unknown_keys"])
    out["canary"] = canary(ops)
    if out["canary"] is False:
        v.append("checker missed a stale read planted into this history")
    rv = checker.check_revisions_monotonic(ops)
    v += rv[:20]
    out["revisions_monotonic"] = not rv
    bad = []
    hist = checker.reference_history(wrecs, bad)
    acked = [(o.key, o.value, o.rev) for o in ops  # puts (a delete may delete nothing)
             if o.ok is True and o.value is not None and
             (o.f == "write" or (o.f == "cas" and o.result[0]))]
    lost = checker.check_no_lost_writes(acked, [(e.key, e.value, e.mod) for e in hist.values()])
    v += lost[:20]
    out["acked_writes"] = len(acked)
    out["lost_writes"] = len(lost)
    wv = checker.check_watches(wrecs, first_rev=first_rev, last_rev=final_rev)
    v += wv[:20]
    out["watch_violations"] = len(wv)
    out["watch_events"] = sum(len(r) for w in wrecs for r in w.responses)
    out["watch_reconnects"] = sum(len(w.resumes) for w in wrecs)
    return out


def report(i, res):
    print("run %d (seed %d, %d members): %d ops (%d ok, %d indeterminate), %d acked writes, nemesis %s; "
          "linearizable=%s revisions_monotonic=%s lost=%d watch_events=%d watch_violations=%d "
          "reconnects=%d snapshots=%s canary=%s checked in %.1fs" % (i, res["seed"], res["members"], res["ops"], res.get("ok", 0),
                             res.get("indeterminate", 0), res.get("acked_writes", 0),
                             res.get("nemesis"), res.get("linearizable"),
                             res.get("revisions_monotonic"), res.get("lost_writes", -1),
                             res.get("watch_events", 0), res.get("watch_violations", -1),
                             res.get("watch_reconnects", 0), res.get("snapshots_installed"), res.get("canary"),
                             res.get("check_secs", 0)), flush=True)
    for v in res["violations"][:30]:
        print("  VIOLATION " + v, flush=True)
    if res.get("traceback"):
        print(res["traceback"], flush=True)
    if res["violations"]:
        for name, text in sorted(res.get("logs", {}).items()):
            print("--- log of %s (tail)\n%s" % (name, text), flush=True)


def _child(conn, seconds, seed, members, t0):
    res = run(seconds, seed, members=members,
              log=lambda s: print("  %.1f %s" % (time.time() - t0, s), flush=True),
              faults=[f for f in os.environ.get("FAULTS", "").split(",") if f] or None)
    conn.send(res)
    conn.close()


def run_isolated(seconds, seed, members, t0):
    """run() in a child process: the harness's own crash (a segfault in
    grpcio's threads was seen once in a soak) costs one run, reported as a
    harness crash (its history unchecked, counted as a failure), not the
    rest of the soak. The cluster's processes and namespaces are the
    child's; it cleans them up itself unless it crashed."""
    ctx = multiprocessing.get_context("spawn")
    rd, wr = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(wr, seconds, seed, members, t0))
    p.start()
    wr.close()
    res = None
    try:
        res = rd.recv()
    except EOFError:
        pass
    p.join()
    if res is None:
        res = {"seed": seed, "members": members, "ops": 0, "harness_crash": True,
               "violations": ["harness crash: the run's process exited with %s before "
                              "reporting; its history was not checked" % p.exitcode]}
    return res


def main(total_seconds, run_seconds, max_runs=None, seed=None, sizes=(3, 5)):
    """Runs nemesis runs of run_seconds until total_seconds or max_runs,
    cluster sizes cycling through `sizes`; prints one line per run and
    totals (by fault kind too); exit status 1 on any violation."""
    seed = seed if seed is not None else int(time.time())
    t0 = time.time()
    tot = {"runs": 0, "ops": 0, "ok": 0, "indeterminate": 0, "violations": 0,
           "watch_events": 0, "nemesis": {}, "sizes": {}, "crashes": 0}
    i = 0
    while True:
        left = total_seconds - (time.time() - t0)
        if (max_runs is not None and i >= max_runs) or left < min(run_seconds, 20) * 0.5:
            break
        n = sizes[i % len(sizes)]
        res = run_isolated(min(run_seconds, max(left - 15, 10)), seed + i, n, t0)
        report(i, res)
        if res.get("harness_crash"):
            tot["crashes"] += 1
        tot["runs"] += 1
        tot["sizes"][n] = tot["sizes"].get(n, 0) + 1
        for k in ("ops", "ok", "indeterminate", "watch_events"):
            tot[k] += res.get(k, 0)
        tot["violations"] += len(res["violations"])
        for k, c in res.get("nemesis", {}).items():
            tot["nemesis"][k] = tot["nemesis"].get(k, 0) + c
        i += 1
    nem = tot["nemesis"]

    def kind(prefix):
        return sum(c for k, c in nem.items() if k.startswith(prefix))
    replacements = sum(nem.get(k, 0) for k in REPLACEMENTS)
    print("TOTAL %d runs (%s) in %.0fs: %d ops checked (%d ok, %d indeterminate), "
          "%d watch events, %d kills, %d partitions (%d one-way, %d bridge), %d pauses, "
          "%d member replacements (%s), %d compactions; %d violations"
          % (tot["runs"], ", ".join("%d x %d members" % (c, s)
                                   for s, c in sorted(tot["sizes"].items())),
             time.time() - t0, tot["ops"], tot["ok"], tot["indeterminate"],
             tot["watch_events"], kind("kill"), kind("isolate") + kind("oneway") + kind("bridge"),
             kind("oneway"), kind("bridge"), kind("pause"), replacements,
             ", ".join("%s=%d" % (k, nem.get(k, 0)) for k in REPLACEMENTS),
             nem.get("compact", 0), tot["violations"]), flush=True)
    if tot["crashes"]:
        print("TOTAL harness crashes (runs whose history was not checked): %d" % tot["crashes"],
              flush=True)
    print("TOTAL faults by kind: " + (", ".join("%s=%d" % kv for kv in sorted(nem.items()))
                                      or "none"), flush=True)
    return 1 if tot["violations"] or tot["runs"] == 0 else 0


if __name__ == "__main__":
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    sys.exit(main(secs, int(os.environ.get("RUN_SECONDS", "60")),
                  seed=int(os.environ["SEED"]) if "SEED" in os.environ else None,
                  sizes=[int(x) for x in os.environ.get("MEMBERS", "3,5").split(",")]))
