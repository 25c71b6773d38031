#!/usr/bin/python3
"""check_proto_compat.py — proto/*.proto against etcd's own schema.

Compiles proto/rpc.proto (with its imports) into a descriptor set with
protoc-c, then checks it against the descriptors shipped with python3-etcd3
(compiled from etcd's rpc.proto, kv.proto, auth.proto): every etcd message,
field (number, type, label, type name), enum value and service method
(types, streaming) must exist in ours unchanged. Ours may have more (fields
from later etcd releases). If etcd's Go sources are installed
(golang-etcd-server-dev), field numbers are also checked against their
rpc.proto text.
"""
import os
import re
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL " + msg)


def wire(t):
    # string and bytes are the same on the wire; etcd 3.4 turned some
    # strings (AuthRoleRevokePermissionRequest.key) into bytes.
    return descriptor_pb2.FieldDescriptorProto.TYPE_BYTES if t == descriptor_pb2.FieldDescriptorProto.TYPE_STRING else t


def load_ours():
    with tempfile.NamedTemporaryFile(suffix=".pb") as f:
        subprocess.run(
            ["protoc-c", "-I.", "--descriptor_set_out=" + f.name, "--include_imports", "proto/rpc.proto"],
            check=True,
        )
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(open(f.name, "rb").read())
    msgs, enums, services = {}, {}, {}

    def walk(prefix, mtypes, etypes):
        for e in etypes:
            enums[prefix + e.name] = {v.name: v.number for v in e.value}
        for m in mtypes:
            name = prefix + m.name
            msgs[name] = {f.name: f for f in m.field}
            walk(name + ".", m.nested_type, m.enum_type)

    for fd in fds.file:
        walk("." + fd.package + ".", fd.message_type, fd.enum_type)
        for s in fd.service:
            services[fd.package + "." + s.name] = {m.name: m for m in s.method}
    return msgs, enums, services


def check_against_etcd3(msgs, enums, services):
    try:
        from etcd3.etcdrpc import auth_pb2, kv_pb2, rpc_pb2
    except ImportError:
        fail("python3-etcd3 is not installed (make deps)")
        return
    n = 0
    for mod in (kv_pb2, auth_pb2, rpc_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)

        def walk(prefix, mtypes, etypes):
            nonlocal n
            for e in etypes:
                ours = enums.get(prefix + e.name)
                if ours is None:
                    fail("enum %s missing" % (prefix + e.name))
                    continue
                for v in e.value:
                    if ours.get(v.name) != v.number:
                        fail("enum %s.%s: etcd %d, ours %s" % (prefix + e.name, v.name, v.number, ours.get(v.name)))
            for m in mtypes:
                name = prefix + m.name
                ours = msgs.get(name)
                if ours is None:
                    fail("message %s missing" % name)
                    continue
                for f in m.field:
                    o = ours.get(f.name)
                    n += 1
                    if o is None:
                        fail("%s.%s missing" % (name, f.name))
                    elif (o.number, wire(o.type), o.label, o.type_name) != (f.number, wire(f.type), f.label, f.type_name):
                        fail(
                            "%s.%s: etcd (%d,%d,%d,%s) ours (%d,%d,%d,%s)"
                            % (name, f.name, f.number, f.type, f.label, f.type_name, o.number, o.type, o.label, o.type_name)
                        )
                walk(name + ".", m.nested_type, m.enum_type)

        walk("." + fdp.package + ".", fdp.message_type, fdp.enum_type)
        for s in fdp.service:
            ours = services.get(fdp.package + "." + s.name, {})
            for m in s.method:
                o = ours.get(m.name)
                if o is None:
                    fail("rpc %s.%s missing" % (s.name, m.name))
                elif (o.input_type, o.output_type, o.client_streaming, o.server_streaming) != (
                    m.input_type,
                    m.output_type,
                    m.client_streaming,
                    m.server_streaming,
                ):
                    fail("rpc %s.%s differs" % (s.name, m.name))
    print("checked %d etcd fields from python3-etcd3's descriptors" % n)


def check_against_go_sources(msgs):
    root = "/usr/share/gocode/src/go.etcd.io/etcd"
    files = {
        "etcdserverpb": root + "/etcdserver/etcdserverpb/rpc.proto",
        "mvccpb": root + "/mvcc/mvccpb/kv.proto",
        "authpb": root + "/auth/authpb/auth.proto",
    }
    if not all(os.path.exists(p) for p in files.values()):
        print("etcd Go sources not installed; skipping that cross-check")
        return
    n = 0
    field_re = re.compile(r"^\s*(?:repeated\s+)?[\w.]+\s+(\w+)\s*=\s*(\d+)")
    for pkg, path in files.items():
        stack = []
        for line in open(path):
            line = re.sub(r"//.*", "", line)
            m = re.match(r"^\s*(message|enum|oneof)\s+(\w+)\s*\{", line)
            if m:
                stack.append((m.group(1), m.group(2)))
                continue
            if "}" in line and stack:
                stack.pop()
                continue
            if not stack or stack[-1][0] == "enum":
                continue
            fm = field_re.match(line)
            if not fm:
                continue
            msg_path = "." + pkg + "." + ".".join(name for kind, name in stack if kind == "message")
            ours = msgs.get(msg_path, {}).get(fm.group(1))
            n += 1
            if ours is None or ours.number != int(fm.group(2)):
                fail("%s.%s = %s in etcd's Go sources, ours %s" % (msg_path, fm.group(1), fm.group(2), ours and ours.number))
    print("checked %d fields against etcd 3.4's Go .proto sources" % n)


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    msgs, enums, services = load_ours()
    check_against_etcd3(msgs, enums, services)
    check_against_go_sources(msgs)
    # Later-release fields we rely on must be there too.
    for m, f, num in [
        (".etcdserverpb.MemberListRequest", "linearizable", 1),
        (".etcdserverpb.StatusResponse", "dbSizeQuota", 12),
        (".etcdserverpb.HashKVResponse", "hash_revision", 4),
        (".etcdserverpb.WatchCreateRequest", "fragment", 8),
        (".etcdserverpb.WatchResponse", "fragment", 7),
    ]:
        o = msgs.get(m, {}).get(f)
        if o is None or o.number != num:
            fail("%s.%s should be %d" % (m, f, num))
    if "Downgrade" not in services.get("etcdserverpb.Maintenance", {}):
        fail("Maintenance.Downgrade missing")
    print("%d failures" % len(failures) if failures else "proto compatible with etcd")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
