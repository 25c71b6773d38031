"""h2raw.py — a raw HTTP/2 client for tests that must send what no gRPC
library will: malformed gRPC framing, a stream that ends mid-message, a
grpc-encoding header over an uncompressed message.

Requests are written frame by frame (HPACK literals without indexing, so no
encoder is needed); response header blocks are decoded with libnghttp2's
HPACK inflater through ctypes, since servers (Go's HTTP/2, nghttp2) Huffman-
code and index what they send. Used by tests/test_rpc_grpc.py (rpc_echo_server)
and tests/compat/test_grpc_errors.py (cairnd, etcd).
"""
import ctypes
import socket
import struct
import time
import urllib.parse

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_RST, H2_SETTINGS, H2_PING, H2_GOAWAY, H2_WINDOW_UPDATE, H2_CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS = 1, 4


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_literal(name, value):
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request_headers(port, path, extra=()):
    """The header block of a gRPC POST to `path`; `extra` adds (name, value) pairs."""
    return b"".join(
        hpack_literal(n, v)
        for n, v in [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", b"127.0.0.1:%d" % port),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        + list(extra)
    )


def grpc_msg(data, flag=0):
    return bytes([flag]) + struct.pack(">I", len(data)) + data


def read_frames(sock, until, timeout=3.0):
    """Reads frames until until(frames) is true, EOF or timeout; returns (frames, eof)."""
    sock.settimeout(timeout)
    buf = b""
    frames = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return frames, True
        if not chunk:
            return frames, True
        buf += chunk
        while len(buf) >= 9:
            n = struct.unpack(">I", b"\x00" + buf[:3])[0]
            if len(buf) < 9 + n:
                break
            frames.append((buf[3], buf[4], struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF, buf[9 : 9 + n]))
            buf = buf[9 + n :]
        if until(frames):
            return frames, False
    return frames, False


def stream_ended(sid):
    return lambda frames: any(
        f[2] == sid and ((f[0] in (H2_HEADERS, H2_DATA) and f[1] & END_STREAM) or f[0] == H2_RST) for f in frames
    )


def raw_h2(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(PREFACE + frame(H2_SETTINGS, 0, 0))
    return s


# ---- HPACK decoding through libnghttp2 ------------------------------------


class _NV(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.POINTER(ctypes.c_uint8)),
        ("value", ctypes.POINTER(ctypes.c_uint8)),
        ("namelen", ctypes.c_size_t),
        ("valuelen", ctypes.c_size_t),
        ("flags", ctypes.c_uint8),
    ]


_lib = None


def _nghttp2():
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libnghttp2.so.14")
        lib.nghttp2_hd_inflate_new.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.nghttp2_hd_inflate_del.argtypes = [ctypes.c_void_p]
        lib.nghttp2_hd_inflate_hd2.restype = ctypes.c_ssize_t
        lib.nghttp2_hd_inflate_hd2.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(_NV), ctypes.POINTER(ctypes.c_int),
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
        ]
        lib.nghttp2_hd_inflate_end_headers.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


class Inflater:
    """One connection's HPACK decoding context (its dynamic table)."""

    def __init__(self):
        self.h = ctypes.c_void_p()
        if _nghttp2().nghttp2_hd_inflate_new(ctypes.byref(self.h)) != 0:
            raise RuntimeError("nghttp2_hd_inflate_new")

    def __del__(self):
        if _lib is not None and self.h:
            _lib.nghttp2_hd_inflate_del(self.h)

    def decode(self, block):
        """Decodes one complete header block into a list of (name, value) str pairs."""
        out = []
        nv = _NV()
        flags = ctypes.c_int()
        pos = 0
        while True:
            rest = block[pos:]
            n = _lib.nghttp2_hd_inflate_hd2(self.h, ctypes.byref(nv), ctypes.byref(flags), rest, len(rest), 1)
            if n < 0:
                raise RuntimeError("HPACK error %d" % n)
            pos += n
            if flags.value & 0x02:  # NGHTTP2_HD_INFLATE_EMIT
                out.append((ctypes.string_at(nv.name, nv.namelen).decode("latin-1"),
                            ctypes.string_at(nv.value, nv.valuelen).decode("latin-1")))
            if flags.value & 0x01:  # NGHTTP2_HD_INFLATE_FINAL
                _lib.nghttp2_hd_inflate_end_headers(self.h)
                return out
            if n == 0 and not rest:
                return out


def _strip_padding(flags, payload):
    if flags & 0x08:  # PADDED
        pad = payload[0]
        payload = payload[1 : len(payload) - pad]
    if flags & 0x20:  # PRIORITY
        payload = payload[5:]
    return payload


def header_blocks(frames, sid):
    """Every header block the server sent on stream `sid`, decoded in order
    (the connection's frames are all run through one inflater)."""
    inf = Inflater()
    blocks, cur, cur_sid = [], None, None
    for ftype, flags, fsid, payload in frames:
        if ftype == H2_HEADERS:
            cur, cur_sid = _strip_padding(flags, payload), fsid
        elif ftype == H2_CONTINUATION and cur is not None:
            cur += payload
        else:
            continue
        if flags & END_HEADERS:
            decoded = inf.decode(cur)
            if cur_sid == sid:
                blocks.append(decoded)
            cur = None
    return blocks


def grpc_outcome(frames, sid):
    """What a gRPC client would make of stream `sid`: ("OK"/code number as
    int, decoded grpc-message, DATA bytes); ("RST", error code, b"") for a
    reset stream, ("HTTP", :status, b"") for a non-gRPC answer."""
    data = b"".join(f[3] for f in frames if f[0] == H2_DATA and f[2] == sid)
    hdrs = {}
    for block in header_blocks(frames, sid):
        hdrs.update(block)
    if "grpc-status" in hdrs:
        return int(hdrs["grpc-status"]), urllib.parse.unquote(hdrs.get("grpc-message", "")), data
    for f in frames:
        if f[0] == H2_RST and f[2] == sid:
            return "RST", struct.unpack(">I", f[3])[0], b""
    return "HTTP", hdrs.get(":status"), data


def grpc_request(port, path, body, extra_headers=(), end_stream=True, timeout=5.0):
    """Sends one request on a fresh connection: headers, then `body` as one
    DATA frame (END_STREAM when end_stream); returns grpc_outcome()."""
    s = raw_h2(port)
    try:
        s.sendall(frame(H2_HEADERS, END_HEADERS, 1, request_headers(port, path, extra_headers)))
        s.sendall(frame(H2_DATA, END_STREAM if end_stream else 0, 1, body))
        frames, _ = read_frames(s, stream_ended(1), timeout=timeout)
        return grpc_outcome(frames, 1)
    finally:
        s.close()
