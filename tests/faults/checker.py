"""Checkers for histories recorded against cairn (or etcd) under faults.

Pure functions over plain data, no I/O: the nemesis runs record, these
judge. Every checker returns a list of violations (strings); empty = pass.

HISTORY OF CLIENT OPERATIONS (per key register)
  An Op is one client call on one key:
    f        'read' | 'write' | 'cas'
    key      the key
    value    write: the value written; cas: the new value; read: None
    expect   cas: the value the compare requires (None = key absent)
    ok       True  = completed, result known
             False = completed with a definite failure (no effect; ignored)
             None  = indeterminate (timeout, connection lost): it may have
                     taken effect at any time after `invoke`, or never
    result   read: the value read (None = absent);
             cas: (succeeded, observed) where observed is the value the
                  failure branch read (only meaningful when not succeeded;
                  use NOVALUE if unknown)
    invoke, complete   times (any monotonic clock; complete None if ok None)
    rev      response header revision (None if unknown)
  Writers must use a unique value per write: it makes a CAS on mod_revision
  expressible as a CAS on the value read together with that mod_revision,
  and lets the checker drop indeterminate writes nobody observed.

LINEARIZABILITY (check_linearizable)
  Registers compose (linearizability is local), so each key is checked
  alone, with Lowe's variant of Wing & Gong's algorithm: a depth-first
  search over the event list that linearizes a call as soon as the model
  allows it, backtracks on meeting the return of an op not yet linearized,
  and memoises (set of linearized ops, state) so that no configuration is
  explored twice. Indeterminate ops have no return event: they may be
  linearized at any point after their call, or never (equivalent to "at the
  end", where nothing observes them). The search succeeds once every
  completed op is linearized. A step budget bounds the search; exceeding it
  is reported as a violation-free "unknown" (counted separately by callers
  via `stats`), never as a pass silently.
"""
import collections

NOVALUE = object()  # "not observed"


class Op:
    __slots__ = ("f", "key", "value", "expect", "ok", "result", "invoke", "complete", "rev",
                 "proc", "idx")

    def __init__(self, f, key, value=None, expect=None, ok=True, result=None, invoke=0.0,
                 complete=None, rev=None, proc=None):
        self.f, self.key, self.value, self.expect = f, key, value, expect
        self.ok, self.result, self.invoke, self.complete = ok, result, invoke, complete
        self.rev, self.proc, self.idx = rev, proc, None

    def __repr__(self):
        st = {True: "ok", False: "fail", None: "info"}[self.ok]
        return "%s(%r%s%s)->%s %r [%s..%s] rev=%s p=%s" % (
            self.f, self.key, "" if self.f == "read" else " v=%r" % (self.value,),
            " exp=%r" % (self.expect,) if self.f == "cas" else "", st, self.result,
            self.invoke, self.complete, self.rev, self.proc)


# --- the register model ---------------------------------------------------

def _step(state, op):
    """Returns the new state if op may take effect on `state` with its
    recorded outcome, else raises _Illegal (cheaper: returns _ILLEGAL)."""
    if op.f == "write":
        return op.value
    if op.f == "read":
        return state if op.result == state else _ILLEGAL
    # cas
    if op.ok is None:  # indeterminate: it took effect iff the compare held
        return op.value if state == op.expect else state
    succeeded, observed = op.result
    if succeeded:
        return op.value if state == op.expect else _ILLEGAL
    if state == op.expect:
        return _ILLEGAL
    if observed is not NOVALUE and observed != state:
        return _ILLEGAL
    return state


_ILLEGAL = object()


def _observed_values(ops):
    seen = set()
    for op in ops:
        if op.ok is not True:
            continue
        if op.f == "read":
            seen.add(op.result)
        elif op.f == "cas":
            seen.add(op.expect)
            if not op.result[0] and op.result[1] is not NOVALUE:
                seen.add(op.result[1])
    return seen


def _relevant(ops):
    """Drops what cannot matter: definite failures, indeterminate reads, and
    indeterminate writes/CAS whose value no completed op observed (placing
    such an op at the end is always possible and observes nothing)."""
    seen = _observed_values(ops)
    out = []
    for op in ops:
        if op.ok is False:
            continue
        if op.ok is None and (op.f == "read" or op.value not in seen):
            continue
        out.append(op)
    return out


def _observer_bounds(ops, init):
    """Indeterminate writes/CAS whose value is unique (written by no other
    op, not the initial value, not None) and observed by a completed op
    must have taken effect before that observer returned: their return
    time is bounded by the earliest such return. This turns them into
    completed ops for the search, instead of calls pending to the end (which
    multiplies the configurations by two per pending op).
    Returns {index in ops: bound time}."""
    writers = collections.Counter(op.value for op in ops if op.f in ("write", "cas"))
    first_seen = {}
    for op in ops:
        if op.ok is not True:
            continue
        vals = ()
        if op.f == "read":
            vals = (op.result,)
        elif op.f == "cas":
            vals = (op.expect,) if op.result[0] else (op.result[1],)
        for v in vals:
            if v is not NOVALUE and (v not in first_seen or op.complete < first_seen[v]):
                first_seen[v] = op.complete
    bound = {}
    for i, op in enumerate(ops):
        v = op.value
        if (op.ok is None and v is not None and v != init and writers[v] == 1 and
                v in first_seen and first_seen[v] >= op.invoke):
            bound[i] = first_seen[v]
    return bound


class _Entry:
    __slots__ = ("op", "is_call", "match", "prev", "next", "id")


def _linearize_key(ops, init, budget):
    """Lowe / Wing-Gong with memoisation. Returns (verdict, info) with
    verdict True, False or None (budget exhausted)."""
    ops = _relevant(ops)
    n = len(ops)
    if n == 0:
        return True, None
    bound = _observer_bounds(ops, init)
    events = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 0, i, True))
        if op.ok is True:
            if op.complete is None or op.complete < op.invoke:
                raise ValueError("completed op without a valid complete time: %r" % op)
            # a return at the same instant as another call: calls first
            # (treat as concurrent, the permissive reading)
            events.append((op.complete, 1, i, False))
        elif i in bound:
            events.append((bound[i], 1, i, False))
    events.sort(key=lambda e: (e[0], e[1]))
    head = _Entry()
    head.prev = None
    prev = head
    calls = {}
    for t, _, i, is_call in events:
        e = _Entry()
        e.op, e.is_call, e.id, e.match = ops[i], is_call, i, None
        e.prev, e.next = prev, None
        prev.next = e
        prev = e
        if is_call:
            calls[i] = e
        else:
            calls[i].match = e
    remaining = sum(1 for e in calls.values() if e.match is not None)

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        r = e.match
        if r is not None:
            r.prev.next = r.next
            if r.next:
                r.next.prev = r.prev

    def unlift(e):
        r = e.match
        if r is not None:
            r.prev.next = r
            if r.next:
                r.next.prev = r
        e.prev.next = e
        if e.next:
            e.next.prev = e

    # Symmetry: pending ops (no return event) of the same kind and value,
    # e.g. several timed-out deletes, are interchangeable once invoked; only
    # the earliest-invoked one still in the list is tried (any linearization
    # can be rewritten to use them in invoke order). `seen` holds the
    # classes met so far in the current scan of the list.
    def cls(e):
        if e.match is None:
            return (e.op.f, e.op.value, e.op.expect)
        return None

    # Dominance: for the memo, pending ops of a class count by how many are
    # used (always the earliest, see above): a configuration with the same
    # completed ops linearized and the same state but fewer pending ops used
    # can do all the other can. cache: (bits of non-pending ops, state) ->
    # count tuples already explored.
    classes = {}
    pending_mask = 0
    for i, e in calls.items():
        if e.match is None:
            pending_mask |= 1 << i
            classes.setdefault(cls(e), len(classes))
    counts = [0] * len(classes)

    def dominated(key, cnt):
        seen_counts = cache.get(key)
        if seen_counts is None:
            cache[key] = [cnt]
            return False
        for t in seen_counts:
            if all(a <= b for a, b in zip(t, cnt)):
                return True
        seen_counts.append(cnt)
        return False

    # Order: each scan of the candidates (the calls before the first return
    # event) tries the ops that have a return first (phase 0), then the
    # pending ones (phase 1): configurations using fewer pending ops are
    # explored first, so the dominance check prunes the others.
    state = init
    linearized = 0
    cache = {}
    stack = []
    entry = head.next
    phase = 0
    seen = frozenset()
    steps = 0
    best = (0, None)  # deepest point reached, for the report
    while remaining > 0:
        steps += 1
        if steps > budget:
            return None, {"steps": steps, "ops": n}
        if entry is None:
            raise AssertionError("event list exhausted")
        if not entry.is_call:
            if phase == 0 and pending_mask:
                phase, seen, entry = 1, frozenset(), head.next
                continue
            if not stack:
                return False, {"stuck_at": entry.op, "deepest": best[1],
                               "depth": best[0], "steps": steps, "ops": n}
            entry, state, seen, phase = stack.pop()
            linearized &= ~(1 << entry.id)
            unlift(entry)
            c = cls(entry)
            if c is None:
                remaining += 1
            else:
                counts[classes[c]] -= 1
                seen = seen | {c}
            entry = entry.next
            continue
        c = cls(entry)
        if (c is None) != (phase == 0) or (c is not None and c in seen):
            entry = entry.next
            continue
        new = _step(state, entry.op)
        if new is not _ILLEGAL:
            lin2 = linearized | (1 << entry.id)
            if c is not None:
                counts[classes[c]] += 1
            if not dominated((lin2 & ~pending_mask, new), tuple(counts)):
                stack.append((entry, state, seen, phase))
                state = new
                linearized = lin2
                if c is None:
                    remaining -= 1
                lift(entry)
                if len(stack) > best[0]:
                    best = (len(stack), entry.op)
                entry, phase, seen = head.next, 0, frozenset()
                continue
            if c is not None:
                counts[classes[c]] -= 1
        if c is not None:
            seen = seen | {c}
        entry = entry.next
    return True, {"steps": steps, "ops": n}


def check_linearizable(ops, init=None, budget=2_000_000, stats=None):
    """Per-key linearizability of read/write/cas registers. `init`: the
    initial value of every key (None = absent) or a dict key -> value.
    Returns violations; fills `stats` (dict) with ops, keys, unknown."""
    by_key = collections.defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    bad = []
    st = {"keys": len(by_key), "ops": 0, "unknown_keys": [], "steps": 0}
    for key in sorted(by_key, key=repr):
        k_init = init.get(key) if isinstance(init, dict) else init
        verdict, info = _linearize_key(by_key[key], k_init, budget)
        st["ops"] += len(by_key[key])
        if info:
            st["steps"] += info.get("steps", 0)
        if verdict is None:
            st["unknown_keys"].append(key)
        elif not verdict:
            bad.append("key %r not linearizable: no linearization accounts for %r "
                       "(deepest prefix %d ops, last linearized %r)"
                       % (key, info["stuck_at"], info["depth"], info["deepest"]))
    if stats is not None:
        stats.update(st)
    return bad


# --- acknowledged writes --------------------------------------------------

def check_no_lost_writes(acked, history):
    """acked: iterable of (key, value, revision) for every acknowledged
    write (revision = the response header revision, None if unknown).
    history: the committed history as (key, value, mod_revision) tuples
    (from watches from revision 1, or from reads at every revision), or a
    dict key -> value of the final state when every key is written once.
    Every acknowledged write must be in it with its value."""
    bad = []
    if isinstance(history, dict):
        for key, value, rev in acked:
            if key not in history:
                bad.append("acknowledged write lost: %r=%r (rev %s): key absent" % (key, value, rev))
            elif history[key] != value:
                bad.append("acknowledged write lost: %r=%r (rev %s): found %r"
                           % (key, value, rev, history[key]))
        return bad
    by_kv = collections.defaultdict(set)
    for key, value, rev in history:
        by_kv[(key, value)].add(rev)
    for key, value, rev in acked:
        revs = by_kv.get((key, value))
        if not revs:
            bad.append("acknowledged write lost: %r=%r (rev %s) never in the history"
                       % (key, value, rev))
        elif rev is not None and rev not in revs:
            bad.append("acknowledged write %r=%r acked at rev %s but committed at %s"
                       % (key, value, rev, sorted(revs)))
    return bad


# --- revisions in real-time order ------------------------------------------

def check_revisions_monotonic(ops):
    """For completed ops A, B with A.complete < B.invoke: B.rev >= A.rev.
    Only pass linearizable operations (serializable reads may lag)."""
    done = sorted((op for op in ops if op.ok is True and op.rev is not None),
                  key=lambda o: o.complete)
    by_invoke = sorted((op for op in ops if op.ok is True and op.rev is not None),
                       key=lambda o: o.invoke)
    bad = []
    j = 0
    best = None  # op with the highest rev among those completed so far
    for b in by_invoke:
        while j < len(done) and done[j].complete < b.invoke:
            if best is None or done[j].rev > best.rev:
                best = done[j]
            j += 1
        if best is not None and b.rev < best.rev:
            bad.append("revision went backwards: %r saw rev %d after %r completed with rev %d"
                       % (b, b.rev, best, best.rev))
    return bad


# --- watches ----------------------------------------------------------------

class Event:
    __slots__ = ("type", "key", "value", "mod", "create", "version", "prev")

    def __init__(self, type, key, value, mod, create=0, version=0, prev=None):
        self.type, self.key, self.value, self.mod = type, key, value, mod
        self.create, self.version, self.prev = create, version, prev  # prev: (value, mod) or None

    def __repr__(self):
        return "%s %r=%r@%d" % (self.type, self.key, self.value, self.mod)


class WatchRecord:
    """What one watcher saw. responses: list of lists of Event (one inner
    list per WatchResponse with events). start: the start_revision asked
    for the first stream (0 = "now": then `created_rev` must be the header
    revision of the created response). resumes: list of (index into
    responses, start_revision asked) for each reconnect. compacted: list of
    (index, compact_revision) when the server cancelled for compaction (the
    watcher may then resume from compact_revision). end: the highest
    revision the watcher is known to have caught up to (a progress or last
    header revision), or None. prefix/key: the range watched (key with
    prefix=True = that prefix; key None = everything). prev_kv: asked."""

    def __init__(self, name, key=None, prefix=True, start=1, prev_kv=False):
        self.name, self.key, self.prefix, self.start, self.prev_kv = name, key, prefix, start, prev_kv
        self.responses = []
        self.resumes = []
        self.compacted = []
        self.end = None
        self.created_rev = None

    def matches(self, key):
        if self.key is None:
            return True
        return key.startswith(self.key) if self.prefix else key == self.key


def reference_history(records, bad):
    """The union of all watchers' events by (revision, key), checking they
    agree. Returns dict (mod, key) -> Event."""
    ref = {}
    for r in records:
        for resp in r.responses:
            for ev in resp:
                k = (ev.mod, ev.key)
                o = ref.get(k)
                if o is None:
                    ref[k] = ev
                elif (o.type, o.value) != (ev.type, ev.value):
                    bad.append("watchers disagree on %r at rev %d: %r vs %r (%s)"
                               % (ev.key, ev.mod, o, ev, r.name))
    return ref


def check_watches(records, history=None, first_rev=1, last_rev=None):
    """Ordered, unique, reliable, atomic per revision, resumable and prev_kv
    correct, each watcher against `history` (dict (mod, key) -> Event, by
    default the union of all watchers, checked for agreement). The history
    must be complete between first_rev and last_rev (every revision there
    is a mutation: a revision with no event in it is reported)."""
    bad = []
    ref = reference_history(records, bad)
    if history is None:
        history = ref
    else:
        for k, ev in ref.items():
            h = history.get(k)
            if h is None or (h.type, h.value) != (ev.type, ev.value):
                bad.append("watch event %r not in the history (history has %r)" % (ev, h))
    revs = collections.defaultdict(list)
    for (mod, key), ev in history.items():
        revs[mod].append(ev)
    if last_rev is None:
        last_rev = max(revs) if revs else 0
    for rev in range(first_rev, last_rev + 1):
        if rev not in revs:
            bad.append("revision %d has no event in any watcher (lost by all)" % rev)
    # per-key previous state, for prev_kv
    # (unknown for a key's first event unless the history starts at 1)
    prev_of = {}
    last = {}
    for mod in sorted(revs):
        for ev in sorted(revs[mod], key=lambda e: e.key):
            if ev.key in last or first_rev <= 1:
                prev_of[(mod, ev.key)] = last.get(ev.key)
            last[ev.key] = None if ev.type == "DELETE" else (ev.value, mod)
    for r in records:
        bad += _check_one_watch(r, history, revs, prev_of)
    return bad


def _check_one_watch(r, history, revs, prev_of):
    bad = []
    seen = set()
    last_rev = 0
    resumes = dict(r.resumes)
    compacted = dict(r.compacted)
    # windows the watcher must cover without gap: [from, to]
    expect_from = r.start if r.start else (r.created_rev + 1 if r.created_rev else None)
    covered = []  # (from, to, compact revision it starts at or None) windows
    win_from, win_compact = expect_from, None
    for i, resp in enumerate(r.responses):
        if i in compacted:
            # cancelled for compaction: events before compact_revision may be
            # gone; the window so far ends at the last revision seen
            covered.append((win_from, last_rev, win_compact))
            win_from = max(compacted[i], last_rev + 1)
            win_compact = compacted[i]
        if i in resumes:
            asked = resumes[i]
            # before its first event a watcher is caught up to start - 1:
            # reconnecting then asks for start again, no gap
            upto = max(last_rev, (expect_from or 1) - 1)
            if asked > upto + 1 and i not in compacted:
                bad.append("%s resumed at %d after seeing %d: a gap" % (r.name, asked, last_rev))
        if not resp:
            continue
        resp_revs = sorted({ev.mod for ev in resp})
        for ev in resp:
            if ev.mod < last_rev:
                bad.append("%s out of order: %r after rev %d" % (r.name, ev, last_rev))
            k = (ev.mod, ev.key)
            if k in seen:
                bad.append("%s duplicate event %r" % (r.name, ev))
            seen.add(k)
            if not r.matches(ev.key):
                bad.append("%s got %r outside its range" % (r.name, ev))
            h = history.get(k)
            if h is not None and (h.type, h.value) != (ev.type, ev.value):
                bad.append("%s event %r differs from history %r" % (r.name, ev, h))
            if r.prev_kv:
                want = prev_of.get(k, NOVALUE)
                # etcd reads prev_kv at mod - 1: below a compaction the
                # watcher was told about, it is gone and left out
                if ev.prev is None and any(ev.mod <= c for c in compacted.values()):
                    want = NOVALUE
                if want is not NOVALUE and ev.prev != want:
                    bad.append("%s prev_kv of %r is %r, history says %r" % (r.name, ev, ev.prev, want))
            last_rev = max(last_rev, ev.mod)
        # atomic: this response holds every matching event of its revisions
        for rev in resp_revs:
            want = {e.key for e in revs.get(rev, []) if r.matches(e.key)}
            got = {e.key for e in resp if e.mod == rev}
            if want - got:
                bad.append("%s revision %d split or incomplete in one response: got %s, want %s"
                           % (r.name, rev, sorted(got), sorted(want)))
    end = max(last_rev, r.end or 0)
    covered.append((win_from, end, win_compact))
    # reliable: every matching event inside the covered windows was seen,
    # but for a delete at the compact revision a window resumed at: the
    # compaction may already have removed that tombstone (its key's last
    # revision at or below it; etcd 3.5 does the same)
    for lo, hi, crev in covered:
        if lo is None:
            continue
        for rev in range(lo, hi + 1):
            for ev in revs.get(rev, []):
                if rev == crev and ev.type == "DELETE":
                    continue
                if r.matches(ev.key) and (rev, ev.key) not in seen:
                    bad.append("%s missed %r (covered %d..%d)" % (r.name, ev, lo, hi))
    return bad
