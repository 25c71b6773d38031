"""cairnd's logs, read from a real process: --log-format json gives one JSON
object per line with level, ts and msg; the startup line names the version,
data dir, URLs and cluster; --log-level debug adds failed requests, and
the default level (info) keeps them out; SIGTERM ends with exit 0 and a last
line. Run with /usr/bin/python3."""
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers  # noqa: E402


def etcdctl(srv, *args):
    return subprocess.run(["etcdctl", "--endpoints=" + srv.endpoint] + list(args),
                          env=dict(os.environ, ETCDCTL_API="3"), capture_output=True,
                          text=True, timeout=30)


def term(srv):
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(timeout=20)
    assert rc == 0, "cairnd exited %s after SIGTERM" % rc


def json_run():
    srv = servers.Server("cairnd", ["--log-format", "json", "--log-level", "debug"])
    try:
        assert etcdctl(srv, "put", "k", "v").returncode == 0
        r = etcdctl(srv, "get", "k", "--rev=99")
        assert r.returncode != 0 and "future revision" in r.stderr, r.stderr
        assert etcdctl(srv, "compact", "2").returncode == 0
        term(srv)
        lines = srv.log_text().splitlines()
        recs = []
        for ln in lines:
            rec = json.loads(ln)  # every line is one JSON object
            for field in ("level", "ts", "msg"):
                assert field in rec, (field, ln)
            assert rec["level"] in ("debug", "info", "warn", "error", "fatal"), ln
            recs.append(rec)
        start = [r for r in recs if r["msg"] == "cairnd started"]
        assert len(start) == 1, lines
        s = start[0]
        assert s["version"] and s["etcd-api-version"].startswith("3."), s
        assert s["data-dir"].endswith("/data"), s
        assert s["client-urls"] == srv.url, s
        assert s["peer-urls"] == "http://127.0.0.1:%d" % srv.peer, s
        assert s["initial-cluster"] == "default=http://127.0.0.1:%d" % srv.peer, s
        failed = [r for r in recs if r["msg"] == "request failed"]
        assert any(r["level"] == "debug" and r["method"] == "Range" and
                   "future revision" in r["error"] for r in failed), failed
        assert any(r["msg"] == "compaction requested" and r["revision"] == "2" for r in recs)
        assert recs[-1]["msg"] == "cairnd stopped", recs[-1]
        print("json: %d lines, startup line %s" % (len(recs), json.dumps(s)))
    finally:
        srv.stop()


def text_info_run():
    srv = servers.Server("cairnd", [])  # text, info: etcd's defaults
    try:
        assert etcdctl(srv, "put", "k", "v").returncode == 0
        etcdctl(srv, "get", "k", "--rev=99")  # fails: logged at debug only
        term(srv)
        lines = srv.log_text().splitlines()
        start = [ln for ln in lines if "cairnd started" in ln]
        assert len(start) == 1 and " INFO " in start[0], lines
        assert "data-dir=%s/data" % srv.dir in start[0], start[0]
        assert "client-urls=%s" % srv.url in start[0], start[0]
        assert not [ln for ln in lines if "request failed" in ln or " DEBUG " in ln], lines
        assert "cairnd stopped" in lines[-1], lines[-1]
        print("text at info: %d lines, no debug" % len(lines))
    finally:
        srv.stop()


if __name__ == "__main__":
    json_run()
    text_info_run()
    print("logs ok")
