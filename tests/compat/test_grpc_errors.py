#!/usr/bin/python3
"""test_grpc_errors.py — what cairnd answers to requests no etcd client
sends: protobuf that does not decode, a message cut short, a compressed
message, a grpc-encoding it cannot decode, an unknown method. Each must get
etcd 3.5's gRPC status and message, word for word (grpc-go's texts, and for
protobuf the text of etcd's generated gogo Unmarshal).

Every case runs against cairnd and against the real etcd (Debian's 3.4.23),
raw HTTP/2 (tests/h2raw.py). etcd 3.4 and 3.5 differ in two answers: grpc-go
1.26 (etcd 3.4) writes a stream's decode error as "grpc: failed to unmarshal
the received message " + error, grpc-go 1.58 (etcd 3.5.10+) puts ": " there
(rpc_util.go, recv), and 1.26 answers a path without a method
RESOURCE_EXHAUSTED where later ones (etcd 3.5.10+) say UNIMPLEMENTED
(server.go, handleStream); the expectations for etcd are adjusted for that.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers import Server  # noqa: E402
from h2raw import grpc_msg, grpc_request  # noqa: E402

UNARY = "grpc: error unmarshalling request: "
STREAM = "grpc: failed to unmarshal the received message: "
UNKNOWN, INTERNAL, UNIMPLEMENTED = 2, 13, 12
EOF_ = "unexpected EOF"
KV, LEASE, MAINT, CLUSTER = "/etcdserverpb.KV/", "/etcdserverpb.Lease/", "/etcdserverpb.Maintenance/", "/etcdserverpb.Cluster/"
WATCH, KEEPALIVE = "/etcdserverpb.Watch/Watch", LEASE + "LeaseKeepAlive"
GZIP = [(b"grpc-encoding", b"gzip")]


def bad(path, hexbody, why):
    """A message that etcd's generated code refuses with `why`."""
    stream = path in (WATCH, KEEPALIVE)
    return (path, grpc_msg(bytes.fromhex(hexbody)), (), not stream, (INTERNAL, (STREAM if stream else UNARY) + why))


CASES = [
    # Unary requests that do not decode, one per method (handlers that never
    # look at their request included: grpc-go decodes before etcd runs).
    ("Range, truncated varint", bad(KV + "Range", "0a", EOF_)),
    ("Range, wrong wire type", bad(KV + "Range", "0801", "proto: wrong wireType = 0 for field Key")),
    ("Range, tag 0", bad(KV + "Range", "0001", "proto: RangeRequest: illegal tag 0 (wire type 0)")),
    ("Range, end group", bad(KV + "Range", "0c", "proto: RangeRequest: wiretype end group for non-group")),
    ("Range, unknown wire type 6", bad(KV + "Range", "7e", "proto: illegal wireType 6")),
    ("Range, integer overflow", bad(KV + "Range", "18ffffffffffffffffffff01", "proto: integer overflow")),
    ("Range, negative length", bad(KV + "Range", "0affffffffffffffffff01",
                                   "proto: negative length found during unmarshaling")),
    ("Put, value cut short", bad(KV + "Put", "120561", EOF_)),
    ("DeleteRange, wrong wire type", bad(KV + "DeleteRange", "1a00", "proto: wrong wireType = 2 for field PrevKv")),
    ("Txn, nested op", bad(KV + "Txn", "12020801", "proto: wrong wireType = 0 for field RequestRange")),
    ("Compact, truncated", bad(KV + "Compact", "100108", EOF_)),
    ("LeaseGrant", bad(LEASE + "LeaseGrant", "0a00", "proto: wrong wireType = 2 for field TTL")),
    ("LeaseRevoke", bad(LEASE + "LeaseRevoke", "0900000000000000", "proto: wrong wireType = 1 for field ID")),
    ("LeaseTimeToLive", bad(LEASE + "LeaseTimeToLive", "1200", "proto: wrong wireType = 2 for field Keys")),
    ("LeaseLeases", bad(LEASE + "LeaseLeases", "0b", EOF_)),
    ("Status", bad(MAINT + "Status", "14", "proto: StatusRequest: wiretype end group for non-group")),
    ("Defragment", bad(MAINT + "Defragment", "0b08", EOF_)),
    ("Hash", bad(MAINT + "Hash", "7f", "proto: illegal wireType 7")),
    ("HashKV", bad(MAINT + "HashKV", "0a00", "proto: wrong wireType = 2 for field Revision")),
    ("MoveLeader", bad(MAINT + "MoveLeader", "0a00", "proto: wrong wireType = 2 for field TargetID")),
    ("Alarm", bad(MAINT + "Alarm", "1200", "proto: wrong wireType = 2 for field MemberID")),
    ("MemberAdd", bad(CLUSTER + "MemberAdd", "0801", "proto: wrong wireType = 0 for field PeerURLs")),
    ("MemberRemove", bad(CLUSTER + "MemberRemove", "0a00", "proto: wrong wireType = 2 for field ID")),
    ("MemberUpdate", bad(CLUSTER + "MemberUpdate", "080112036162", EOF_)),
    ("MemberList", bad(CLUSTER + "MemberList", "13", EOF_)),
    ("MemberPromote", bad(CLUSTER + "MemberPromote", "0d00", "proto: wrong wireType = 5 for field ID")),
    # Stream messages that do not decode.
    ("Watch, truncated", bad(WATCH, "0a", EOF_)),
    ("Watch, create filters", bad(WATCH, "0a022900", "proto: wrong wireType = 1 for field Filters")),
    ("LeaseKeepAlive", bad(KEEPALIVE, "08", EOF_)),
    # Framing.
    ("unary, message cut short", (KV + "Range", b"\x00\x00\x00\x00\x64short", (), True, (UNKNOWN, EOF_))),
    ("unary, no message", (KV + "Range", b"", (), True, (UNKNOWN, "EOF"))),
    ("stream, message cut short", (WATCH, b"\x00\x00\x00\x00\x64short", (), True, (INTERNAL, EOF_))),
    ("compressed flag", (KV + "Range", grpc_msg(b"\x0a\x01a", 1), (), True,
                         (INTERNAL, "grpc: compressed flag set with identity or empty encoding"))),
    ("flag 2", (KV + "Range", grpc_msg(b"\x0a\x01a", 2), (), True,
                (INTERNAL, "grpc: received unexpected payload format 2"))),
    ("unary, grpc-encoding gzip", (KV + "Range", grpc_msg(b"\x0a\x01a"), GZIP, True,
                                   (UNIMPLEMENTED, 'grpc: Decompressor is not installed for grpc-encoding "gzip"'))),
    ("Watch, grpc-encoding gzip", (WATCH, b"", GZIP, False,
                                   (UNIMPLEMENTED, 'grpc: Decompressor is not installed for grpc-encoding "gzip"'))),
    ("unknown method", (KV + "Nope", grpc_msg(b""), (), True,
                        (UNIMPLEMENTED, "unknown method Nope for service etcdserverpb.KV"))),
    ("unknown service", ("/nope.Svc/X", grpc_msg(b""), (), True, (UNIMPLEMENTED, "unknown service nope.Svc"))),
    ("malformed method name", ("/nope", grpc_msg(b""), (), True, (UNIMPLEMENTED, 'malformed method name: "/nope"'))),
]


def as_etcd34(want):
    code, text = want
    if text.startswith("malformed method name"):
        code = 8  # RESOURCE_EXHAUSTED in grpc-go before 1.5x (server.go handleStream)
    return code, text.replace(STREAM, STREAM[:-2] + " ")


def main():
    failures = []
    for kind in ("cairn", "etcd"):
        srv = Server(kind)
        try:
            for name, (path, body, hdrs, end, want) in CASES:
                if kind == "etcd":
                    want = as_etcd34(want)
                got = grpc_request(srv.port, path.encode(), body, hdrs, end)[:2]
                ok = got == want
                print(("ok   " if ok else "FAIL ") + "%s: %s" % (kind, name) + ("" if ok else " -- got %r, want %r" % (got, want)))
                if not ok:
                    failures.append((kind, name))
        finally:
            srv.stop()
    print("%d checks failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
