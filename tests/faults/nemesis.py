"""One nemesis run: a 3-member cluster in network namespaces
(tests/cluster/cluster.py's Cluster and Netns), concurrent clients doing
linearizable reads, puts, deletes, two-key txns and CAS transactions
(compare on value or on mod_revision) on a few keys, a watcher with prev_kv on every member, and a
nemesis that SIGKILLs the leader / a follower / a majority, pauses members
with SIGSTOP/SIGCONT, isolates the leader or a minority by partition and
compacts. Then every checker of checker.py judges the history.

run(seconds, seed) -> dict of totals and verdicts (violations listed)."""
import collections
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
from cluster import Cluster, Netns  # noqa: E402

KEYS = ["n/k%d" % i for i in range(3)]
PREFIX = "n/"
OP_TIMEOUT = 1.5
SNAPSHOT_FLAGS = ["--snapshot-count", "300", "--experimental-snapshot-catchup-entries", "100"]


class Worker(threading.Thread):
    """Random reads, writes and CAS on KEYS through one member. Values are
    unique ("w<id>-<n>"). A CAS on mod_revision reads first (recorded) and
    compares on the mod_revision read; it is recorded as a CAS on the value
    read with it (values are unique, so the two compares are equivalent)."""

    def __init__(self, wid, member, rec, rng, halt):
        super().__init__(daemon=True)
        self.wid, self.m, self.rec, self.rng, self.halt = wid, member, rec, rng, halt
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
            kv = self.m.kv  # the member's current stub (renewed on restart)
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
    def __init__(self, cl, net, rng, log):
        self.cl, self.net, self.rng, self.log = cl, net, rng, log
        self.initial = Cluster.initial_cluster(cl.members)
        self.counts = {}
        self.cuts = []
        self.stopped = []

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1
        self.log("nemesis: %s" % what)

    def idx(self, m):
        return self.cl.members.index(m)

    def leader(self):
        return self.cl.leader(timeout=0.3)

    def restart(self, ms):
        for m in ms:
            if not m.alive():
                m.start(self.initial, wait=False)
        for m in ms:
            m.wait_serving(timeout=20.0)

    def partition(self, group):
        """Cuts every member in group from every member outside it."""
        others = [i for i in range(len(self.cl.members)) if i not in group]
        for i in group:
            for j in others:
                self.net.cut(i, j)
                self.cuts.append((i, j))

    def heal(self):
        for i, j in self.cuts:
            self.net.heal(i, j)
        self.cuts = []

    def cont(self):
        for m in self.stopped:
            if m.alive():
                m.proc.send_signal(signal.SIGCONT)
        self.stopped = []

    def one(self, watch_end, compact_kv):
        rng = self.rng
        members = self.cl.members
        fault = rng.choice(["kill-leader", "kill-follower", "kill-majority", "pause-leader",
                            "pause-member", "isolate-leader", "isolate-minority", "compact"])
        lead = self.leader()
        if fault in ("kill-leader", "pause-leader", "isolate-leader") and lead is None:
            fault = fault.replace("leader", "follower" if fault.startswith("kill") else "member") \
                if not fault.startswith("isolate") else "isolate-minority"
        if fault == "compact":
            # below what every watcher has seen, so no watcher needs a
            # compacted revision; compaction still races reads and writes
            rev = watch_end() - 20
            if rev > 1:
                try:
                    kvclient.compact(compact_kv(), rev, 3.0)
                    self.count("compact")
                except grpc.RpcError as e:
                    self.log("compact at %d failed: %s" % (rev, e.code()))
            return rng.uniform(0.5, 1.5)
        if fault.startswith("kill"):
            if fault == "kill-leader":
                victims = [lead]
            elif fault == "kill-follower":
                victims = [rng.choice([m for m in members if m is not lead])]
            else:
                victims = rng.sample(members, 2)
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
        if fault == "isolate-leader":
            group = [self.idx(lead)]
        else:
            group = [rng.randrange(len(members))]
        self.partition(group)
        self.count(fault)
        time.sleep(rng.uniform(1.0, 4.0))
        self.heal()
        return rng.uniform(0.5, 1.5)


def run(seconds, seed, workers=6, log=print):
    rng = random.Random(seed)
    res = {"seed": seed, "violations": [], "ops": 0}
    net = Netns(3)
    cl = None
    halt = threading.Event()
    stop_watch = threading.Event()
    threads = []
    try:
        # small snapshot counts: members restarted or cut off catch up from
        # snapshots (installed under live watchers) as well as from the log
        cl = Cluster(3, hosts=net.ips, netns=net.ns, extra=SNAPSHOT_FLAGS)
        cl.wait_leader(timeout=20.0)
        rec = kvclient.Recorder()
        # every revision after this one is a mutation of the run; watchers
        # start from the first (fresh cluster: nothing to skip)
        first_rev = cl.members[0].status().header.revision + 1
        wrecs = []
        for m in cl.members:
            wr = checker.WatchRecord("watch@" + m.name, key=PREFIX, prefix=True, start=first_rev,
                                     prev_kv=True)
            t = threading.Thread(target=kvclient.watch_record,
                                 args=(m.endpoint, wr, stop_watch, PREFIX, first_rev),
                                 daemon=True)
            t.start()
            wrecs.append(wr)
            threads.append(t)
        ws = [Worker(i, cl.members[i % 3], rec, random.Random(seed * 100 + i), halt)
              for i in range(workers)]
        for w in ws:
            w.start()
        nem = Nemesis(cl, net, rng, log)
        t_end = time.time() + seconds
        time.sleep(1.0)
        while time.time() < t_end:
            pause = nem.one(lambda: min((w.end or 0) for w in wrecs),
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
        # watchers catch up to the final revision
        deadline = time.time() + 20
        while time.time() < deadline and any((w.end or 0) < final_rev for w in wrecs):
            time.sleep(0.1)
        stop_watch.set()
        for t in threads:
            t.join(5)
        for w in wrecs:
            if (w.end or 0) < final_rev:
                res["violations"].append("%s stopped at %s, final revision %d"
                                         % (w.name, w.end, final_rev))
        t_check = time.time()
        res.update(judge(rec.ops, wrecs, first_rev, final_rev))
        res["violations"] += compacted_watch(cl, first_rev, final_rev,
                                             checker.reference_history(wrecs, []))
        res["check_secs"] = time.time() - t_check
        res["nemesis"] = nem.counts
    finally:
        halt.set()
        stop_watch.set()
        if cl:
            for m in cl.members:  # nothing stays stopped
                if m.alive():
                    m.proc.send_signal(signal.SIGCONT)
            res.setdefault("logs", {m.name: m.log_text()[-3000:] for m in cl.members})
            res["snapshots_installed"] = sum(m.log_text().count("installing snapshot from leader")
                                             for m in cl.members)
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
    print("run %d (seed %d): %d ops (%d ok, %d indeterminate), %d acked writes, nemesis %s; "
          "linearizable=%s revisions_monotonic=%s lost=%d watch_events=%d watch_violations=%d "
          "reconnects=%d snapshots=%s canary=%s checked in %.1fs" % (i, res["seed"], res["ops"], res.get("ok", 0),
                             res.get("indeterminate", 0), res.get("acked_writes", 0),
                             res.get("nemesis"), res.get("linearizable"),
                             res.get("revisions_monotonic"), res.get("lost_writes", -1),
                             res.get("watch_events", 0), res.get("watch_violations", -1),
                             res.get("watch_reconnects", 0), res.get("snapshots_installed"), res.get("canary"),
                             res.get("check_secs", 0)), flush=True)
    for v in res["violations"][:30]:
        print("  VIOLATION " + v, flush=True)
    if res["violations"]:
        for name, text in sorted(res.get("logs", {}).items()):
            print("--- log of %s (tail)\n%s" % (name, text), flush=True)


def main(total_seconds, run_seconds, max_runs=None, seed=None):
    """Runs nemesis runs of run_seconds until total_seconds or max_runs;
    prints one line per run and totals; exit status 1 on any violation."""
    seed = seed if seed is not None else int(time.time())
    t0 = time.time()
    tot = {"runs": 0, "ops": 0, "ok": 0, "indeterminate": 0, "violations": 0,
           "watch_events": 0, "nemesis": {}}
    i = 0
    while True:
        left = total_seconds - (time.time() - t0)
        if (max_runs is not None and i >= max_runs) or left < min(run_seconds, 20) * 0.5:
            break
        res = run(min(run_seconds, max(left - 15, 10)), seed + i,
                  log=lambda s: print("  %.1f %s" % (time.time() - t0, s), flush=True))
        report(i, res)
        tot["runs"] += 1
        for k in ("ops", "ok", "indeterminate", "watch_events"):
            tot[k] += res.get(k, 0)
        tot["violations"] += len(res["violations"])
        for k, n in res.get("nemesis", {}).items():
            tot["nemesis"][k] = tot["nemesis"].get(k, 0) + n
        i += 1
    kills = sum(n for k, n in tot["nemesis"].items() if k.startswith("kill"))
    parts = sum(n for k, n in tot["nemesis"].items() if k.startswith("isolate"))
    print("TOTAL %d runs in %.0fs: %d ops checked (%d ok, %d indeterminate), %d watch events, "
          "%d kills, %d partitions, %d pauses, %d compactions; %d violations"
          % (tot["runs"], time.time() - t0, tot["ops"], tot["ok"], tot["indeterminate"],
             tot["watch_events"], kills, parts,
             sum(n for k, n in tot["nemesis"].items() if k.startswith("pause")),
             tot["nemesis"].get("compact", 0), tot["violations"]), flush=True)
    return 1 if tot["violations"] or tot["runs"] == 0 else 0


if __name__ == "__main__":
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    sys.exit(main(secs, int(os.environ.get("RUN_SECONDS", "60")),
                  seed=int(os.environ["SEED"]) if "SEED" in os.environ else None))
