#!/usr/bin/env python3
"""Regenerates the seed corpus of fuzz_raft_lmdb (tests/fuzz/seeds_raft_lmdb/
seedNN): a flags byte, then records (see fuzz_raft_lmdb.c for the format).
Run from the repository root. The seeds are what a member really stores (a
log with membership changes after a snapshot, a hard state, a snapshot with
voters and learners) and the corruptions raft_lmdb must refuse: a hard state
of the wrong size, a snapshot with more members than RAFT_MAX_MEMBERS or a
size that does not match its counts, a log key of the wrong size, a gap in
the log, a term going back, an entry shorter than its header; and the
inputs fuzzing found (FOUND)."""
import os
import struct
import sys

OUT = "tests/fuzz/seeds_raft_lmdb"
NORMAL, CONF = 0, 1
ADD_VOTER, ADD_LEARNER, PROMOTE, REMOVE = range(4)


def s8(x):
    return struct.pack("<b", x)


def entry(data=b"", typ=NORMAL, step=0, tstep=0):
    return bytes([0]) + s8(step) + s8(tstep) + bytes([typ, len(data)]) + data


def conf(cc, mid):
    return entry(bytes([cc]) + struct.pack(">Q", mid), CONF)


def raw_log(key, val):
    return bytes([1, len(key)]) + key + bytes([len(val)]) + val


def raw_state(sel, val, key=b""):
    head = bytes([2, sel]) + (bytes([len(key)]) + key if sel > 1 else b"")
    return head + bytes([len(val)]) + val


def hard(term, vote, commit):
    return bytes([3, 0, term, vote]) + struct.pack("<H", commit)


def snap(index, term, voters, learners=()):
    return bytes([3, 1]) + struct.pack("<H", index) + bytes([term, len(voters), len(learners)]) + \
        bytes(voters) + bytes(learners)


def log(n, start_term=0):
    return b"".join(entry(b"put-%d" % i, tstep=start_term if i == 0 else 0) for i in range(n))


SEEDS = [
    # a lone voter: hard state and a short log
    (0, hard(1, 1, 3) + log(5)),
    # three voters, a log with membership changes (add a learner, promote it, remove one)
    (1, hard(2, 1, 6) + log(3) + conf(ADD_LEARNER, 4) + conf(PROMOTE, 4) + conf(REMOVE, 3) + log(2)),
    # a snapshot at 10 with voters and a learner, the log after it
    (0, snap(10, 1, [1, 2, 3], [4]) + hard(1, 0, 10) + entry(b"a", step=10) + log(4)),
    # a snapshot with only this member: it elects itself, commits, compacts
    (0, snap(4, 1, [1]) + hard(1, 1, 4) + entry(b"x", step=4) + log(3)),
    # terms rising along the log, commit beyond the last entry
    (0, hard(3, 1, 200) + entry(b"t1") + entry(b"t2", tstep=1) + entry(b"t3", tstep=1)),
    # a hard state of the wrong size
    (0, raw_state(0, b"\0" * 23) + log(2)),
    # a snapshot claiming more members than RAFT_MAX_MEMBERS
    (0, snap(2, 1, list(range(1, 20)))),
    # a snapshot whose size does not match its counts
    (0, raw_state(1, struct.pack(">QQQ", 3, 1, (2 << 32) | 1) + struct.pack(">Q", 1))),
    # a log key of the wrong size among the entries
    (0, hard(1, 1, 2) + log(3) + raw_log(b"\0\0\0\0\0\0\0\2\0", b"\0" * 9) + log(2)),
    # a gap in the log
    (0, hard(1, 1, 2) + log(2) + entry(b"gap", step=3) + log(1)),
    # a term going back
    (0, hard(3, 1, 1) + entry(b"t3", tstep=2) + entry(b"t1", tstep=-2)),
    # an entry shorter than its header, at the end
    (0, hard(1, 1, 2) + log(3) + raw_log(struct.pack(">Q", 4), b"\0\0\0")),
    # a membership change too short to decode, and one of an unknown type
    (1, hard(1, 1, 4) + log(2) + entry(b"\1\0", CONF) + entry(bytes([9]) + b"\0" * 8, CONF)),
    # other keys in raft_state
    (0, hard(1, 1, 1) + raw_state(2, b"junk", key=b"hard2") + raw_state(2, b"", key=b"snap") + log(2)),
    # ticks off: the stored state read as it is
    (2, snap(7, 2, [1, 2, 3]) + hard(2, 2, 9) + entry(b"s", step=7, tstep=2) + log(3)),
]

# Found by fuzzing: a log of term 1 with no hard state (term 0); raft_new
# ran on it (raft_check: "I2: entry 1 term 1 > current 0") and now refuses
# it as corrupt.
FOUND = {
    "seed-hard-state-behind-log":
        (1, log(2) + entry(b"\1\0", CONF) + entry(bytes([9]) + b"\0" * 8, CONF)),
}


def main():
    if not os.path.isdir("tests/fuzz"):
        sys.exit("run from the repository root")
    os.makedirs(OUT, exist_ok=True)
    for i, (flags, body) in enumerate(SEEDS):
        with open(os.path.join(OUT, "seed%02d" % i), "wb") as f:
            f.write(bytes([flags]) + body)
    for name, (flags, body) in FOUND.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([flags]) + body)
    print("%d seeds in %s" % (len(SEEDS) + len(FOUND), OUT))


if __name__ == "__main__":
    main()
