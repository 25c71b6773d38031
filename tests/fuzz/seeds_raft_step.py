#!/usr/bin/env python3
"""Regenerates the seed corpus of fuzz_raft_step (tests/fuzz/seeds_raft_step/
seedNN) from the scripts below. Run from the repository root (needs protoc).

An input is a mode byte (see fuzz_raft_step.c: 0 follower of 2, 1 candidate,
2 leader, +4 compacted log, +8 without PreVote/CheckQuorum) then frames:
a text-format cairnraft.Message (encoded with protoc --encode, framed as
opcode 0 + u16 LE length), "tick", "propose" or "read". After setup the
cluster is at term 1 with entries 1..5 committed (the candidate at term 2).
seed14 reproduces the term overflow raft_msg_check() now refuses: a
heartbeat of term 2^64-1, then enough ticks to campaign (term + 1 wrapped
to 0)."""
import os
import struct
import subprocess
import sys

OUT = "tests/fuzz/seeds_raft_step"
SEEDS = [
    (0, ['type: 1 from: 2 to: 1 term: 1 index: 5 log_term: 1 commit: 7 '
         'entries { term: 1 index: 6 data: "x" } entries { term: 1 index: 7 type: 0 }',
         'type: 7 from: 2 to: 1 term: 1 commit: 5 ctx: 3']),
    (0, ['type: 1 from: 3 to: 1 term: 2 index: 3 log_term: 1 commit: 4 '
         'entries { term: 2 index: 4 data: "conflict" }', "tick"]),
    (0, ["tick"] * 12 + ['type: 3 from: 3 to: 1 term: 2 index: 5 log_term: 1',
                         'type: 5 from: 3 to: 1 term: 2 index: 9 log_term: 1']),
    (0, ['type: 9 from: 2 to: 1 term: 1 snapshot { index: 10 term: 1 conf { voters: 1 '
         'voters: 2 voters: 3 } } snapshot_data: "state"',
         'type: 1 from: 2 to: 1 term: 1 index: 10 log_term: 1 commit: 11 '
         'entries { term: 1 index: 11 }']),
    (0, ['type: 10 from: 2 to: 1 term: 1', 'type: 4 from: 2 to: 1 term: 2',
         'type: 4 from: 3 to: 1 term: 2 reject: true']),
    (0, ["read", 'type: 12 from: 2 to: 1 term: 1 ctx: 1 index: 5']),
    (0, ['type: 1 from: 2 to: 1 term: 1 index: 5 log_term: 1 commit: 6 '
         'entries { term: 1 index: 6 type: 1 data: "\\000\\000\\000\\000\\000\\000\\000\\000\\004" }']),
    (1, ['type: 4 from: 2 to: 1 term: 2', 'type: 4 from: 3 to: 1 term: 2 reject: true']),
    (1, ['type: 6 from: 2 to: 1 term: 3', 'tick', 'type: 3 from: 3 to: 1 term: 3 index: 5 '
         'log_term: 1']),
    (2, ['type: 2 from: 2 to: 1 term: 1 index: 5', "propose",
         'type: 2 from: 3 to: 1 term: 1 index: 6 reject: true reject_hint: 3 log_term: 1',
         'type: 8 from: 2 to: 1 term: 1 ctx: 1', "read"]),
    (2, ['type: 11 from: 3 to: 1 term: 1 ctx: 9', 'type: 8 from: 2 to: 1 term: 1 ctx: 1',
         'type: 8 from: 3 to: 1 term: 1 ctx: 1', "tick"]),
    (2, ["tick"] * 12 + ['type: 2 from: 2 to: 1 term: 4 reject: true']),
    (6, ['type: 2 from: 3 to: 1 term: 1 index: 1 reject: true reject_hint: 0',
         "tick", 'type: 2 from: 3 to: 1 term: 1 index: 5']),
    (4, ['type: 1 from: 2 to: 1 term: 1 index: 2 log_term: 1 commit: 6 '
         'entries { term: 1 index: 3 } entries { term: 1 index: 4 }']),
    (8, ['type: 7 from: 2 to: 1 term: 18446744073709551615 commit: 5'] + ["tick"] * 25),
    (10, ['type: 3 from: 2 to: 1 term: 9 index: 9 log_term: 9', "tick"]),
]


def encode(text):
    return subprocess.run(["protoc", "-I.", "--encode=cairnraft.Message", "proto/raft.proto"],
                          input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def frame(step):
    if step == "tick":
        return b"\x01"
    if step == "propose":
        return b"\x02"
    if step == "read":
        return b"\x03"
    msg = encode(step)
    return b"\x00" + struct.pack("<H", len(msg)) + msg


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (mode, steps) in enumerate(SEEDS):
        with open(os.path.join(OUT, "seed%02d" % i), "wb") as f:
            f.write(bytes([mode]) + b"".join(frame(s) for s in steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
