#!/usr/bin/env python3
"""Regenerates the seed corpus of fuzz_handlers (tests/fuzz/seeds_handlers/)
from the scenarios below: one valid request per cairnd method, then a few
sequences that reach the paths a single request cannot (a watch fed by puts,
a keep-alive of a granted lease, a snapshot, a compaction under a watcher,
the NOSPACE alarm, a learner added and promoted, the leader losing its
quorum to an added voter, stepping down after two election timeouts (20
ticks) and serving as a follower). Run from the
repository root (needs protoc).

The input format is fuzz_handlers.c's: an op byte (kind | argument << 3)
and its operands, lengths u16 little-endian. Requests are text-format
etcdserverpb messages encoded with protoc --encode."""
import hashlib
import os
import struct
import subprocess
import sys

OUT = "tests/fuzz/seeds_handlers"

METHODS = ["Range", "Put", "DeleteRange", "Txn", "Compact",
           "LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases",
           "Status", "Alarm", "Defragment", "Hash", "HashKV", "MoveLeader",
           "MemberList", "MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote",
           "Watch", "LeaseKeepAlive", "Snapshot"]
REQUEST = {"Range": "RangeRequest", "Put": "PutRequest", "DeleteRange": "DeleteRangeRequest",
           "Txn": "TxnRequest", "Compact": "CompactionRequest",
           "LeaseGrant": "LeaseGrantRequest", "LeaseRevoke": "LeaseRevokeRequest",
           "LeaseTimeToLive": "LeaseTimeToLiveRequest", "LeaseLeases": "LeaseLeasesRequest",
           "Status": "StatusRequest", "Alarm": "AlarmRequest",
           "Defragment": "DefragmentRequest", "Hash": "HashRequest",
           "HashKV": "HashKVRequest", "MoveLeader": "MoveLeaderRequest",
           "MemberList": "MemberListRequest", "MemberAdd": "MemberAddRequest",
           "MemberRemove": "MemberRemoveRequest", "MemberUpdate": "MemberUpdateRequest",
           "MemberPromote": "MemberPromoteRequest", "Watch": "WatchRequest",
           "LeaseKeepAlive": "LeaseKeepAliveRequest", "Snapshot": "SnapshotRequest"}


def member_id(*urls):
    """etcd's member id: SHA-1 of the sorted peer URLs and the token."""
    d = hashlib.sha1(("".join(sorted(urls)) + "etcd-cluster").encode()).digest()
    return int.from_bytes(d[:8], "big")


SELF = member_id("http://127.0.0.1:2380")  # the fuzzed member (--name=f)
PEER = member_id("http://127.0.0.1:2390")  # the one the scenarios add


def encode(method, text):
    return subprocess.run(["protoc", "-I.", "--encode=etcdserverpb." + REQUEST[method],
                           "proto/rpc.proto"],
                          input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def payload(method, text):
    msg = encode(method, text)
    return struct.pack("<H", len(msg)) + msg


def call(method, text="", wait=True):
    i = METHODS.index(method)
    return bytes([(i << 3) | (0 if wait else 3)]) + payload(method, text)


def open_stream(method):
    return bytes([(METHODS.index(method) << 3) | 4])


def send(slot, method, text=""):
    return bytes([(slot << 3) | 5]) + payload(method, text)


def half_close(slot):
    return bytes([(slot << 3) | 6])


def cancel(slot):
    return bytes([((slot | 4) << 3) | 6])


TICK = bytes([7])


def http_get(path):
    return bytes([((4 | ["/metrics", "/health", "/readyz", "/version"].index(path)) << 3) | 7])


PUT_A = call("Put", 'key: "a" value: "1"')
ADD_PEER = call("MemberAdd", 'peerURLs: "http://127.0.0.1:2390"')
ADD_LEARNER = call("MemberAdd", 'peerURLs: "http://127.0.0.1:2390" isLearner: true')

SEEDS = {
    # one request per method
    "range": PUT_A + call("Range", 'key: "a" range_end: "b" limit: 5 sort_order: DESCEND'),
    "range_serializable": PUT_A + call("Range", 'key: "\\000" range_end: "\\000" '
                                       'serializable: true count_only: true'),
    "put": call("Put", 'key: "k" value: "v" prev_kv: true') + call(
        "Put", 'key: "k" ignore_value: true'),
    "delete_range": PUT_A + call("DeleteRange", 'key: "a" range_end: "z" prev_kv: true'),
    "txn": PUT_A + call("Txn", 'compare { key: "a" target: VALUE value: "1" } '
                        'success { request_put { key: "b" value: "2" } } '
                        'success { request_range { key: "a" range_end: "c" } } '
                        'failure { request_delete_range { key: "a" } }'),
    "compact": PUT_A + PUT_A + call("Compact", "revision: 2 physical: true"),
    "lease_grant": call("LeaseGrant", "TTL: 60 ID: 7"),
    "lease_revoke": call("LeaseGrant", "TTL: 60 ID: 7") + call(
        "Put", 'key: "l" value: "v" lease: 7') + call("LeaseRevoke", "ID: 7"),
    "lease_ttl": call("LeaseGrant", "TTL: 60 ID: 7") + call(
        "Put", 'key: "l" value: "v" lease: 7') + call("LeaseTimeToLive", "ID: 7 keys: true"),
    "lease_leases": call("LeaseGrant", "TTL: 60") + call("LeaseLeases"),
    "lease_keepalive": call("LeaseGrant", "TTL: 60 ID: 7") + open_stream("LeaseKeepAlive") +
    send(0, "LeaseKeepAlive", "ID: 7") + send(0, "LeaseKeepAlive", "ID: 8") + half_close(0),
    "status": call("Status"),
    "alarm": call("Alarm", "action: ACTIVATE memberID: %d alarm: NOSPACE" % SELF) +
    call("Alarm", "action: GET") + call("Status") +
    call("Alarm", "action: DEACTIVATE memberID: %d alarm: NOSPACE" % SELF),
    "defragment": call("Defragment"),
    "hash": PUT_A + call("Hash"),
    "hash_kv": PUT_A + PUT_A + call("HashKV", "revision: 2"),
    "move_leader": call("MoveLeader", "targetID: %d" % SELF),
    "member_list": call("MemberList", "linearizable: true"),
    "member_add": ADD_PEER + call("MemberList"),
    "member_remove": ADD_LEARNER + call("MemberRemove", "ID: %d" % PEER),
    "member_update": call("MemberUpdate", 'ID: %d peerURLs: "http://127.0.0.1:2381"' % SELF),
    "member_promote": ADD_LEARNER + call("MemberPromote", "ID: %d" % PEER),
    "watch": open_stream("Watch") +
    send(0, "Watch", 'create_request { key: "a" range_end: "c" prev_kv: true '
         'progress_notify: true }') + PUT_A +
    call("Put", 'key: "b" value: "2"') + send(0, "Watch", "progress_request { }") +
    send(0, "Watch", "cancel_request { watch_id: 0 }") + half_close(0),
    "snapshot": PUT_A + open_stream("Snapshot") + send(0, "Snapshot") + half_close(0),
    # sequences
    "watch_history": PUT_A + call("Put", 'key: "a" value: "2"') + PUT_A +
    call("Compact", "revision: 2") + open_stream("Watch") +
    send(0, "Watch", 'create_request { key: "a" start_revision: 1 }') +
    send(0, "Watch", 'create_request { key: "a" start_revision: 3 watch_id: 5 '
         'filters: NODELETE fragment: true }') +
    call("DeleteRange", 'key: "a"') + TICK + cancel(0),
    "watch_two_streams": open_stream("Watch") + open_stream("Watch") +
    send(0, "Watch", 'create_request { key: "\\000" range_end: "\\000" }') +
    send(1, "Watch", 'create_request { key: "a" watch_id: 3 }') +
    send(1, "Watch", 'create_request { key: "a" watch_id: 3 }') +
    call("Txn", 'success { request_put { key: "a" value: "x" } } '
         'success { request_put { key: "b" value: "y" } }', wait=False) +
    call("Range", 'key: "a" serializable: true') + TICK + half_close(1),
    # values just over LMDB's 2 KiB node limit take a 4 KiB overflow page
    # each: the 6th put passes the 32 KiB quota
    "nospace": b"".join(call("Put", 'key: "big%d" value: "%s"' % (i, "v" * 2100))
                        for i in range(6)) + call("Alarm", "action: GET") +
    call("Put", 'key: "x" value: "y"') + call("DeleteRange", 'key: "big0"'),
    "log_compaction": b"".join(call("Put", 'key: "k%d" value: "v"' % i) for i in range(10)) +
    TICK + TICK + call("Status"),
    "quorum_lost": ADD_PEER + TICK * 21 + call("Put", 'key: "a" value: "1"') +
    call("Range", 'key: "a"') + open_stream("LeaseKeepAlive") +
    send(0, "LeaseKeepAlive", "ID: 7") + call("MemberPromote", "ID: %d" % PEER) +
    call("MoveLeader", "targetID: %d" % PEER) + call("Status"),
    "move_to_peer": ADD_PEER + call("MoveLeader", "targetID: %d" % PEER, wait=False) + TICK,
    "remove_self": call("MemberRemove", "ID: %d" % SELF) + PUT_A + call("Status"),
    "http": PUT_A + http_get("/metrics") + http_get("/health") + http_get("/readyz") +
    http_get("/version"),
    # 8 watchers taking prev_kv: the second txn's events (3 KB, as much
    # again of previous values) pass the hub's 32 KiB per-stream build
    # limit, so the rest goes out through rpc's pulls
    "watch_fanout": open_stream("Watch") + b"".join(
        send(0, "Watch", 'create_request { key: "k" range_end: "l" prev_kv: true }')
        for _ in range(8)) + b"".join(
        call("Txn", "".join('success { request_put { key: "k%d" value: "%s" } } ' % (i, c * 1000)
                            for i in range(3))) for c in "xy") + half_close(0),
    # a fragmenting watcher taking prev_kv: the second txn's events with
    # their previous values pass the 4 KiB response limit
    "watch_fragment": open_stream("Watch") +
    send(0, "Watch", 'create_request { key: "f" range_end: "g" fragment: true prev_kv: true }') +
    b"".join(call("Txn", "".join('success { request_put { key: "f%d" value: "%s" } } '
                                 % (i, c * 1900) for i in range(2)))
             for c in "zy") + half_close(0),
    # a linearizable read left waiting for a quorum that never answers,
    # failed when the leader steps down
    "read_then_step_down": ADD_PEER + call("Range", 'key: "a"', wait=False) + TICK * 21 +
    call("MoveLeader", "targetID: %d" % PEER),
    "move_busy": ADD_PEER + call("MoveLeader", "targetID: %d" % PEER, wait=False) +
    call("MoveLeader", "targetID: %d" % PEER) + call("LeaseGrant", "TTL: 9000000001"),
    # learners up to the 16-member limit, then one more
    "many_learners": b"".join(
        call("MemberAdd", 'peerURLs: "http://10.0.0.%d:2380" isLearner: true' % i)
        for i in range(16)) + call("MemberList") + call(
        "MemberUpdate", 'ID: %d peerURLs: "http://10.0.0.1:2380"' % SELF),
    "unary_on_stream_path": call("Watch", 'create_request { key: "a" }') +
    call("Snapshot") + call("LeaseKeepAlive", "ID: 1"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
