#!/usr/bin/python3
"""Three cairnd members on loopback: writes through each member, read back
linearizably on each (at once) and serializably on each (eventually); the
real etcdctl against all three endpoints: member list, endpoint status,
put/get, and a watch on one member seeing a put made through another."""
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_test, wait_for  # noqa: E402


def etcdctl(endpoints, *args, timeout=10):
    env = dict(os.environ, ETCDCTL_API="3")
    r = subprocess.run(["etcdctl", "--endpoints=" + endpoints, "--command-timeout=5s"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace")


def body(checks, cleanup):
    t0 = time.time()
    c = Cluster(3)
    cleanup.append(c)
    leader, secs = c.wait_leader()
    checks.timing("bootstrap of 3 members until a leader", time.time() - t0)

    # writes through each member; linearizable reads on each see all of them
    written = {}
    for i, m in enumerate(c.members):
        for j in range(5):
            key = "/three/%s/%d" % (m.name, j)
            m.put(key, "v%d%d" % (i, j))
            written[key] = "v%d%d" % (i, j)
            for r in c.members:  # read right after the ack, on every member
                got = r.get(key).kvs
                if not (len(got) == 1 and got[0].value.decode() == written[key]):
                    checks.check("linearizable read of %s on %s right after the put on %s"
                                 % (key, r.name, m.name), False, got)
    for m in c.members:
        checks.check("linearizable reads on %s see all %d writes" % (m.name, len(written)),
                     m.get_dict("/three/") == written, m.get_dict("/three/"))
    # serializable reads (served locally) see writes made through another
    # member eventually
    fresh = {}
    for j in range(10):
        c.members[0].put("/ser/%d" % j, "s%d" % j)
        fresh["/ser/%d" % j] = "s%d" % j
    for m in c.members:
        _, secs = wait_for("serializable reads on " + m.name,
                           lambda: m.get_dict("/ser/", serializable=True) == fresh, 5.0)
        checks.check("serializable reads on %s see the writes made through m0 (after %.3fs)"
                     % (m.name, secs), True)

    # every member lists the 3 members with their names and client URLs
    # (members publish them through raft after they start)
    want = sorted((m.name, m.client_url) for m in c.members)

    def listed():
        return all(sorted((x.name, ",".join(x.clientURLs)) for x in m.member_list()) == want
                   for m in c.members)
    _, secs = wait_for("member list with names and client URLs on every member", listed, 10.0)
    checks.timing("members published names and client URLs", secs)

    eps = c.endpoints()
    rc, out = etcdctl(eps, "member", "list")
    lines = [ln.split(", ") for ln in out.strip().splitlines()]
    got = sorted((f[1], f[2], f[4]) for f in lines if len(f) >= 5)
    checks.check("etcdctl member list: 3 started members with names and client URLs",
                 rc == 0 and got == sorted(("started", n, u) for n, u in want), out)

    rc, out = etcdctl(eps, "endpoint", "status", "-w", "json")
    try:
        sts = [s["Status"] for s in json.loads(out)]
    except ValueError:
        sts = []
    checks.check("etcdctl endpoint status: 3 endpoints", rc == 0 and len(sts) == 3, out)
    if sts:
        leaders = {s["leader"] for s in sts}
        terms = {s["raftTerm"] for s in sts}
        is_leader = [s["leader"] == s["header"]["member_id"] for s in sts]
        checks.check("endpoint status: one leader, same term on all",
                     len(leaders) == 1 and len(terms) == 1 and is_leader.count(True) == 1, sts)
        checks.check("endpoint status: a raft index on each",
                     all(s.get("raftIndex", 0) > 0 for s in sts), sts)
        checks.check("endpoint status: the leader is the one Status reports",
                     leaders == {leader.id}, (leaders, leader.id))

    # --cluster: etcdctl dials every member's client URL as listed, and its
    # HTTP/2 :authority is then the whole URL ("http://host:port")
    for cmd in ("status", "hashkv", "health"):
        rc, out = etcdctl(c.members[0].endpoint, "endpoint", cmd, "--cluster", "-w", "json")
        try:
            n = len(json.loads(out))
        except ValueError:
            n = 0
        checks.check("etcdctl endpoint %s --cluster through one endpoint: 3 members" % cmd,
                     rc == 0 and n == 3, out[-600:])

    rc, out = etcdctl(eps, "put", "/ctl/k", "v1")
    checks.check("etcdctl put through all endpoints", rc == 0 and out.strip() == "OK", out)
    for m in c.members:
        rc, out = etcdctl(m.endpoint, "get", "/ctl/k")
        checks.check("etcdctl get on " + m.name, rc == 0 and out.split() == ["/ctl/k", "v1"], out)

    # a watch on m0 sees a put made through m2
    env = dict(os.environ, ETCDCTL_API="3")
    w = subprocess.Popen(["etcdctl", "--endpoints=" + c.members[0].endpoint, "watch", "/w/",
                          "--prefix"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        time.sleep(0.5)  # the watch is set up
        t1 = time.time()
        c.members[2].put("/w/x", "from-m2")
        c.members[1].put("/w/y", "from-m1")
        out = b""
        while out.count(b"\n") < 6 and time.time() - t1 < 5:
            if select.select([w.stdout], [], [], 0.1)[0]:
                chunk = os.read(w.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
        lines = out.decode().split()
        checks.check("etcdctl watch on m0 sees puts made through m2 and m1",
                     lines == ["PUT", "/w/x", "from-m2", "PUT", "/w/y", "from-m1"], lines)
        checks.timing("watch event delivered on another member", time.time() - t1)
    finally:
        w.kill()
        w.wait()


run_test("cluster three members", body)
