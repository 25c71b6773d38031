"""Start and stop real etcd and cairnd processes on loopback for tests.

Each server gets a fresh temporary data directory and free ports; stop()
kills it and removes the directory. Used by the compatibility and
differential tests (run with /usr/bin/python3)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on %d" % port)


class Server:
    def __init__(self, kind, extra=(), name="default"):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="cairn-%s-" % kind)
        self.port = free_port()
        self.peer = free_port()
        self.endpoint = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.endpoint
        binary = "/usr/bin/etcd" if kind == "etcd" else os.path.join(ROOT, BUILD, "cairnd")
        peer_url = "http://127.0.0.1:%d" % self.peer
        self.args = [binary, "--name", name, "--data-dir", os.path.join(self.dir, "data"),
                     "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                     "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                     "--initial-cluster", "%s=%s" % (name, peer_url)] + list(extra)
        self.log = open(os.path.join(self.dir, "log"), "wb")
        env = dict(os.environ)
        if kind == "etcd":
            env["ETCD_UNSUPPORTED_ARCH"] = "amd64"
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_port(self.port, self.proc)

    def log_text(self):
        with open(os.path.join(self.dir, "log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
