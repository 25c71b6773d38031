#!/usr/bin/env python3
"""Regenerates the seed corpus of fuzz_store_records
(tests/fuzz/seeds_store_records/seedNN): one byte choosing the writes, then
record edits (see fuzz_store_records.c). Run from the repository root.
Inputs found by fuzzing are kept beside them: seed-lease-record-size (a
lease record of the wrong size that store_check let pass and lease
checkpoint then refused as corrupt) and seed-index-mixed-sizes (index items
of two sizes under one key, which the harness must not hand LMDB)."""
import os
import struct
import sys

OUT = "tests/fuzz/seeds_store_records"
KV, INDEX, META, LEASES, LEASE_KEYS = range(5)


def flip(db, rec, off, x):
    return bytes([0, db, rec]) + struct.pack("<H", off) + bytes([x])


def cut(db, rec, length):
    return bytes([1, db, rec]) + struct.pack("<H", length)


def drop(db, rec):
    return bytes([2, db, rec])


def insert(db, key, val):
    return bytes([3, db, len(key)]) + key + bytes([len(val)]) + val


def setv(db, rec, val):
    return bytes([4, db, rec, len(val)]) + val


def be(v):
    return struct.pack(">q", v)


SEEDS = [
    [],
    [flip(KV, 0, 16 + 20, 0xff)],                    # create revision
    [flip(KV, 3, 16 + 7, 0x40)],                     # key length
    [cut(KV, 5, 10)],
    [flip(KV, 2, 7, 0x01)],                          # sub revision
    [flip(KV, 1, 0, 0x80)],                          # main revision negative
    [drop(INDEX, 2)],
    [flip(INDEX, 4, 1 + 15, 0xff)],                  # index item's sub revision
    [insert(INDEX, b"new", b"\x00" * 16)],            # 16-byte item
    [insert(META, b"\x01", be(2 ** 63 - 1))],         # rev
    [insert(META, b"\x02", be(100))],                 # compact above rev
    [insert(META, b"\x01", be(-5))],
    [insert(META, b"\x05", b"\x00" * 15 + b"\x01")],  # cnext
    [insert(META, b"\x00", be(2))],                   # schema
    [insert(META, b"\x04", be(-1))],                  # keys
    [setv(LEASES, 0, b"\x01\x02\x03")],
    [insert(LEASES, b"\x00\x00\x07", be(5))],
    [insert(LEASE_KEYS, b"\x07", b"a")],
    [insert(LEASE_KEYS, be(7), b"a")],
    [flip(KV, 7, 16 + 31, 0x07), flip(INDEX, 1, 3, 0x10)],
    [insert(KV, be(2 ** 63 - 1) + be(2 ** 63 - 1), b"\x00" * 7 + b"\x01" + be(1) + be(1) + be(0) + b"k")],
    [insert(KV, be(30) + be(0), b"\x00" * 7 + b"\x01" + be(30) + be(1) + be(7) + b"q"),
     insert(INDEX, b"q", be(30) + be(0) + b"\x00")],
]


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, edits in enumerate(SEEDS):
        with open(os.path.join(OUT, "seed%02d" % i), "wb") as f:
            f.write(bytes([i % 16]) + b"".join(edits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
