"""Python bindings for cairn's own proto/*.proto (the etcd v3 API as cairn
declares it), generated at test time with protoc into $BUILD/py, plus
minimal gRPC stubs. Using our schemas rather than python3-etcd3's bundled
(older) ones lets tests reach every field etcd 3.5 has."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, os.environ.get("BUILD", "build"), "py")
_PROTOS = ["proto/kv.proto", "proto/auth.proto", "proto/rpc.proto"]


def _generate():
    stamp = os.path.join(OUT, "proto", "rpc_pb2.py")
    newest = max(os.path.getmtime(os.path.join(ROOT, p)) for p in _PROTOS)
    if os.path.exists(stamp) and os.path.getmtime(stamp) >= newest:
        return
    os.makedirs(os.path.join(OUT, "proto"), exist_ok=True)
    subprocess.check_call(["protoc", "-I", ROOT, "--python_out", OUT] + _PROTOS, cwd=ROOT)
    open(os.path.join(OUT, "proto", "__init__.py"), "a").close()


_generate()
sys.path.insert(0, OUT)
from proto import kv_pb2, rpc_pb2  # noqa: E402,F401

_SERVICES = {
    "KV": [("Range", "uu"), ("Put", "uu"), ("DeleteRange", "uu"), ("Txn", "uu"),
           ("Compact", "uu")],
    "Watch": [("Watch", "ss")],
    "Lease": [("LeaseGrant", "uu"), ("LeaseRevoke", "uu"), ("LeaseKeepAlive", "ss"),
              ("LeaseTimeToLive", "uu"), ("LeaseLeases", "uu")],
    "Cluster": [("MemberAdd", "uu"), ("MemberRemove", "uu"), ("MemberUpdate", "uu"),
                ("MemberList", "uu"), ("MemberPromote", "uu")],
    "Maintenance": [("Alarm", "uu"), ("Status", "uu"), ("Defragment", "uu"), ("Hash", "uu"),
                    ("HashKV", "uu"), ("Snapshot", "us"), ("MoveLeader", "uu")],
}


def _types(service, method):
    svc = rpc_pb2.DESCRIPTOR.services_by_name[service]
    m = svc.methods_by_name[method]
    return (getattr(rpc_pb2, m.input_type.name), getattr(rpc_pb2, m.output_type.name))


class Stub:
    def __init__(self, channel, service):
        for method, kind in _SERVICES[service]:
            req, resp = _types(service, method)
            path = "/etcdserverpb.%s/%s" % (service, method)
            make = {"uu": channel.unary_unary, "ss": channel.stream_stream,
                    "us": channel.unary_stream}[kind]
            setattr(self, method, make(path, request_serializer=req.SerializeToString,
                                       response_deserializer=resp.FromString))
