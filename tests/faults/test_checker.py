"""Validates the checkers on handmade histories: linearizable ones pass,
a stale read, a lost write, a lost CAS, revisions going backwards and each
kind of broken watch are caught."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checker import (NOVALUE, Event, Op, WatchRecord, check_linearizable,  # noqa: E402
                     check_no_lost_writes, check_revisions_monotonic, check_watches)


def W(v, t0, t1, ok=True, key="x", rev=None, p=None):
    return Op("write", key, value=v, ok=ok, invoke=t0, complete=t1 if ok else None, rev=rev, proc=p)


def R(v, t0, t1, key="x", rev=None, p=None):
    return Op("read", key, ok=True, result=v, invoke=t0, complete=t1, rev=rev, proc=p)


def C(exp, new, t0, t1, ok=True, res=None, key="x"):
    return Op("cas", key, value=new, expect=exp, ok=ok, result=res, invoke=t0,
              complete=t1 if ok else None)


class Linearizability(unittest.TestCase):
    def lin(self, h, **kw):
        return check_linearizable(h, **kw)

    def test_sequential(self):
        self.assertEqual(self.lin([R(None, 0, 1), W("a", 2, 3), R("a", 4, 5),
                                   C("a", "b", 6, 7, res=(True, NOVALUE)), R("b", 8, 9)]), [])

    def test_concurrent_write_read_either_order(self):
        # read overlaps the write: may see old or new
        self.assertEqual(self.lin([W("a", 0, 1), W("b", 2, 10), R("a", 3, 4)]), [])
        self.assertEqual(self.lin([W("a", 0, 1), W("b", 2, 10), R("b", 3, 4)]), [])

    def test_stale_read_caught(self):
        # b's write completed before the read began; the read returns a
        bad = self.lin([W("a", 0, 1), W("b", 2, 3), R("a", 4, 5)])
        self.assertEqual(len(bad), 1)
        self.assertIn("not linearizable", bad[0])

    def test_read_of_never_written_value_caught(self):
        self.assertNotEqual(self.lin([W("a", 0, 1), R("zzz", 2, 3)]), [])

    def test_nonmonotonic_reads_caught(self):
        # two sequential reads during a long write: new then old is illegal
        self.assertNotEqual(self.lin([W("a", 0, 1), W("b", 2, 20), R("b", 3, 4), R("a", 5, 6)]), [])

    def test_lost_write_caught(self):
        # acknowledged write b then a later read sees the value before it
        bad = self.lin([W("a", 0, 1), W("b", 2, 3), R("b", 4, 5), R("a", 6, 7)])
        self.assertNotEqual(bad, [])

    def test_indeterminate_write_may_apply_late(self):
        # the timed-out write shows up long after its client gave up
        h = [W("a", 0, 1), W("b", 2, None, ok=None), R("a", 3, 4), R("b", 50, 51)]
        self.assertEqual(self.lin(h), [])

    def test_indeterminate_write_may_never_apply(self):
        h = [W("a", 0, 1), W("b", 2, None, ok=None), R("a", 3, 4), R("a", 50, 51)]
        self.assertEqual(self.lin(h), [])

    def test_indeterminate_write_cannot_apply_before_invoke(self):
        h = [W("a", 0, 1), R("b", 2, 3), W("b", 4, None, ok=None)]
        self.assertNotEqual(self.lin(h), [])

    def test_indeterminate_write_cannot_flicker(self):
        # b appears then the older a again with no write of a in between
        h = [W("a", 0, 1), W("b", 2, None, ok=None), R("b", 3, 4), R("a", 5, 6)]
        self.assertNotEqual(self.lin(h), [])

    def test_cas(self):
        h = [W("a", 0, 1), C("a", "b", 2, 3, res=(True, NOVALUE)),
             C("a", "c", 4, 5, res=(False, "b")), R("b", 6, 7)]
        self.assertEqual(self.lin(h), [])

    def test_cas_succeeding_on_wrong_value_caught(self):
        h = [W("a", 0, 1), W("b", 2, 3), C("a", "c", 4, 5, res=(True, NOVALUE))]
        self.assertNotEqual(self.lin(h), [])

    def test_cas_failing_on_right_value_caught(self):
        h = [W("a", 0, 1), C("a", "c", 4, 5, res=(False, NOVALUE))]
        self.assertNotEqual(self.lin(h), [])

    def test_two_concurrent_cas_only_one_wins(self):
        ok = [W("a", 0, 1), C("a", "b", 2, 5, res=(True, NOVALUE)),
              C("a", "c", 2, 5, res=(False, "b")), R("b", 6, 7)]
        self.assertEqual(self.lin(ok), [])
        both = [W("a", 0, 1), C("a", "b", 2, 5, res=(True, NOVALUE)),
                C("a", "c", 2, 5, res=(True, NOVALUE))]
        self.assertNotEqual(self.lin(both), [])

    def test_indeterminate_cas_observed(self):
        h = [W("a", 0, 1), C("a", "b", 2, None, ok=None), R("b", 10, 11)]
        self.assertEqual(self.lin(h), [])
        # it cannot have applied: a was overwritten before it was invoked
        h = [W("a", 0, 1), W("z", 1.5, 1.8), C("a", "b", 2, None, ok=None), R("b", 10, 11)]
        self.assertNotEqual(self.lin(h), [])

    def test_failed_op_ignored(self):
        h = [W("a", 0, 1), W("b", 2, 3, ok=False), R("a", 4, 5)]
        h[1].ok = False
        self.assertEqual(self.lin(h), [])

    def test_keys_independent(self):
        h = [W("a", 0, 1, key="x"), W("a", 0, 1, key="y"), W("b", 2, 3, key="y"),
             R("a", 4, 5, key="x"), R("b", 4, 5, key="y")]
        self.assertEqual(self.lin(h), [])
        h.append(R("a", 6, 7, key="y"))
        bad = self.lin(h)
        self.assertEqual(len(bad), 1)
        self.assertIn("'y'", bad[0])

    def test_many_concurrent_ops_fast(self):
        # 5 overlapping writers x 300 rounds, some writes indeterminate, two
        # concurrent readers per round: searched without exhausting a budget
        h = []
        t = 0.0
        n = 0
        for rnd in range(300):
            vals = []
            for c in range(5):
                n += 1
                v = "v%d" % n
                if c == 4 and rnd % 7 == 0:
                    h.append(W(v, t, None, ok=None))
                else:
                    h.append(W(v, t + 0.01 * c, t + 1))
                    vals.append(v)
            h.append(R(vals[0], t + 0.5, t + 0.6))   # concurrent with the writes
            h.append(R(vals[1], t + 2, t + 3))       # after: whichever went last
            t += 4
        st = {}
        self.assertEqual(self.lin(h, stats=st), [])
        self.assertEqual(st["unknown_keys"], [])

    def test_observed_indeterminate_writes_fast(self):
        # 400 rounds: an acked write, an indeterminate write observed by a
        # read, an indeterminate delete; a stale read planted late is caught
        h = []
        t = 0.0
        for rnd in range(400):
            h.append(W("a%d" % rnd, t, t + 1))
            h.append(W("b%d" % rnd, t + 0.5, None, ok=None))
            h.append(R("b%d" % rnd, t + 2, t + 3))
            h.append(W(None, t + 3.5, None, ok=None))
            h.append(R(None, t + 4, t + 4.5)) if rnd % 3 == 0 else None
            t += 5
        st = {}
        self.assertEqual(self.lin(h, stats=st), [])
        self.assertEqual(st["unknown_keys"], [])
        h.append(R("b350", t + 1, t + 2))
        st = {}
        self.assertNotEqual(self.lin(h, stats=st), [])

    def test_budget_reports_unknown(self):
        h = [W("v%d" % i, 0, 10) for i in range(12)] + [R("nope", 11, 12)]
        st = {}
        bad = check_linearizable(h, budget=50, stats=st)
        self.assertEqual(bad, [])
        self.assertEqual(st["unknown_keys"], ["x"])


class LostWrites(unittest.TestCase):
    def test_history(self):
        hist = [("x", "a", 2), ("x", "b", 3), ("y", "c", 4)]
        self.assertEqual(check_no_lost_writes([("x", "a", 2), ("y", "c", 4)], hist), [])
        bad = check_no_lost_writes([("x", "a", 2), ("x", "q", 5)], hist)
        self.assertEqual(len(bad), 1)
        self.assertIn("lost", bad[0])
        bad = check_no_lost_writes([("x", "b", 9)], hist)
        self.assertIn("committed at", bad[0])

    def test_final_state(self):
        self.assertEqual(check_no_lost_writes([("k1", "1", None)], {"k1": "1"}), [])
        self.assertNotEqual(check_no_lost_writes([("k1", "1", None)], {}), [])
        self.assertNotEqual(check_no_lost_writes([("k1", "1", None)], {"k1": "0"}), [])


class StaleAndLost(unittest.TestCase):
    """The issue's acceptance test: one history with a stale read and a lost
    write must fail both checks."""

    def test_history_with_stale_read_and_lost_write_fails(self):
        h = [W("a", 0, 1, rev=2), W("b", 2, 3, rev=3),
             R("a", 4, 5, rev=3),                  # stale: b was acknowledged
             W("c", 6, 7, key="y", rev=4),         # acknowledged ...
             R(None, 8, 9, key="y", rev=4)]        # ... then gone
        self.assertNotEqual(check_linearizable(h), [])
        final = [("x", "a", 2), ("x", "b", 3)]     # c never reached the history
        acked = [(o.key, o.value, o.rev) for o in h if o.f == "write" and o.ok]
        self.assertEqual(len(check_no_lost_writes(acked, final)), 1)


class Revisions(unittest.TestCase):
    def test_monotonic(self):
        self.assertEqual(check_revisions_monotonic([R("a", 0, 1, rev=5), R("a", 2, 3, rev=5),
                                                    R("a", 2.5, 4, rev=7)]), [])
        # concurrent ops may be in any order
        self.assertEqual(check_revisions_monotonic([R("a", 0, 3, rev=7), R("a", 1, 2, rev=5)]), [])

    def test_backwards_caught(self):
        bad = check_revisions_monotonic([R("a", 0, 1, rev=7), R("a", 2, 3, rev=5)])
        self.assertEqual(len(bad), 1)
        self.assertIn("backwards", bad[0])


def ev(key, value, mod, prev=None, type="PUT"):
    return Event(type, key, value, mod, prev=prev)


class Watches(unittest.TestCase):
    def history(self):
        # rev 2: x=a; 3: y=b; 4: txn x=c,y=d; 5: delete x
        return [[ev("x", "a", 2)], [ev("y", "b", 3)],
                [ev("x", "c", 4, ("a", 2)), ev("y", "d", 4, ("b", 3))],
                [ev("x", None, 5, ("c", 4), "DELETE")]]

    def rec(self, name, responses, prev_kv=True, start=2, **kw):
        r = WatchRecord(name, start=start, prev_kv=prev_kv, **kw)
        r.responses = responses
        return r

    def test_good(self):
        a = self.rec("a", self.history())
        b = self.rec("b", [sum(self.history(), [])])  # all in one response: fine
        c = self.rec("c", [[ev("x", "a", 2)], [ev("x", "c", 4, ("a", 2))],
                           [ev("x", None, 5, ("c", 4), "DELETE")]], key="x", prefix=False)
        self.assertEqual(check_watches([a, b, c], first_rev=2), [])

    def test_out_of_order(self):
        h = self.history()
        bad = check_watches([self.rec("a", h), self.rec("b", [h[1], h[0], h[2], h[3]])],
                            first_rev=2)
        self.assertTrue(any("out of order" in s for s in bad), bad)

    def test_duplicate(self):
        h = self.history()
        bad = check_watches([self.rec("a", h + [h[3]])], first_rev=2)
        self.assertTrue(any("duplicate" in s for s in bad), bad)

    def test_missed(self):
        h = self.history()
        bad = check_watches([self.rec("a", h), self.rec("b", [h[0], h[2], h[3]])], first_rev=2)
        self.assertTrue(any("b missed" in s for s in bad), bad)

    def test_lost_by_all(self):
        h = self.history()
        bad = check_watches([self.rec("a", [h[0], h[2], h[3]])], first_rev=2)
        self.assertTrue(any("revision 3 has no event" in s for s in bad), bad)

    def test_split_revision(self):
        h = self.history()
        bad = check_watches([self.rec("a", h), self.rec("b", [h[0], h[1], [h[2][0]], [h[2][1]], h[3]])],
                            first_rev=2)
        self.assertTrue(any("split" in s for s in bad), bad)

    def test_wrong_prev_kv(self):
        h = self.history()
        wrong = [h[0], h[1], [ev("x", "c", 4, ("zz", 2)), h[2][1]], h[3]]
        bad = check_watches([self.rec("a", h), self.rec("b", wrong)], first_rev=2)
        self.assertTrue(any("prev_kv" in s for s in bad), bad)

    def test_disagree(self):
        h = self.history()
        other = [h[0], [ev("y", "OTHER", 3)], h[2], h[3]]
        bad = check_watches([self.rec("a", h), self.rec("b", other)], first_rev=2)
        self.assertTrue(any("disagree" in s for s in bad), bad)

    def test_resume(self):
        h = self.history()
        r = self.rec("a", h)
        r.resumes = [(2, 4)]  # reconnected after rev 3, asked from 4: fine
        self.assertEqual(check_watches([r], first_rev=2), [])
        r2 = self.rec("b", [h[0], h[1], h[3]])
        r2.resumes = [(2, 5)]  # reconnected asking 5 after seeing 3: gap
        bad = check_watches([r, r2], first_rev=2)
        self.assertTrue(any("gap" in s for s in bad), bad)

    def test_resume_before_first_event(self):
        # the first stream broke before any event: asking start again is no gap
        h = self.history()
        r = self.rec("a", h)
        r.resumes = [(0, 2)]
        self.assertEqual(check_watches([r], first_rev=2), [])
        r2 = self.rec("b", h[1:])
        r2.resumes = [(0, 3)]  # asked from 3 without having seen 2: gap
        bad = check_watches([r, r2], first_rev=2)
        self.assertTrue(any("b resumed at 3" in s for s in bad), bad)

    def test_compacted_resume_allows_gap(self):
        h = self.history()
        r = self.rec("a", h)
        r2 = self.rec("b", [h[0], h[3]])
        r2.compacted = [(1, 5)]
        r2.resumes = [(1, 5)]
        self.assertEqual(check_watches([r, r2], first_rev=2), [])

    def test_delete_at_compact_revision_may_be_gone(self):
        # resumed at the compact revision 5: its delete may be compacted
        # away; a put there is kept by compaction and must be seen
        h = self.history() + [[ev("y", "e", 6, ("d", 4))]]
        r = self.rec("a", h)
        r2 = self.rec("b", [h[0], h[1], h[4]])
        r2.compacted = [(2, 5)]
        r2.resumes = [(2, 5)]
        self.assertEqual(check_watches([r, r2], first_rev=2), [])
        r3 = self.rec("c", [h[0], h[1], h[4]])
        r3.compacted = [(2, 4)]
        r3.resumes = [(2, 4)]
        bad = check_watches([r, r3], first_rev=2)
        self.assertTrue(any("c missed" in s for s in bad), bad)

    def test_prev_kv_left_out_at_compact_revision(self):
        # resumed at the compact revision 4: prev_kv of its events (at 3 and
        # 2) is compacted away and may be missing; at 5 it is not
        h = self.history()
        r = self.rec("a", h)
        r2 = self.rec("b", [h[0], [ev("x", "c", 4), ev("y", "d", 4)], h[3]])
        r2.compacted = [(1, 4)]
        r2.resumes = [(1, 4)]
        self.assertEqual(check_watches([r, r2], first_rev=2), [])
        r3 = self.rec("c", [h[0], h[1], h[2], [ev("x", None, 5, None, "DELETE")]])
        r3.compacted = [(3, 4)]
        r3.resumes = [(3, 4)]
        bad = check_watches([r, r3], first_rev=2)
        self.assertTrue(any("prev_kv" in s for s in bad), bad)

    def test_against_given_history(self):
        h = self.history()
        ref = {(e.mod, e.key): e for resp in h for e in resp}
        self.assertEqual(check_watches([self.rec("a", h)], history=ref, first_rev=2), [])
        bogus = [h[0], h[1], h[2], h[3], [ev("z", "q", 6)]]
        bad = check_watches([self.rec("a", bogus)], history=ref, first_rev=2)
        self.assertTrue(any("not in the history" in s for s in bad), bad)


if __name__ == "__main__":
    unittest.main(verbosity=1)
