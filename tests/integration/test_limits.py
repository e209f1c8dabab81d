#!/usr/bin/env python3
"""Every limit of the "limits" config object, set small and hit, against the
real lokrd (issue 6): max_json_body and max_upload (413), max_elements,
max_rows, max_json_depth, max_set (400), max_header_bytes (431/414),
max_connections_per_ip and max_connections (refused beyond), idle_timeout_s
and request_timeout_s (closed), max_inflight and max_queue (503 overloaded
with Retry-After), compute_deadline_ms (503 deadline_exceeded with
Retry-After).  The defaults: a per-IP limit of at least 256 (300
connections from one address are served)."""
import base64
import concurrent.futures as cf
import json
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")


CONTRACT = L.Contract()


def start(tmp, name, limits, base=BASE, threads=2):
    adir = os.path.join(tmp, name)
    os.makedirs(adir, exist_ok=True)
    cfg = os.path.join(tmp, name + ".json")
    with open(cfg, "w") as f:
        json.dump({"limits": limits}, f)
    return L.Lokrd(base, adir, extra=["--config", cfg, "--threads", str(threads)],
                   contract=CONTRACT)


def closed(sock, within):
    """True if the server closes `sock` within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def b64rows(rows, width):
    return {"dtype": "f32", "shape": [rows, width],
            "b64": base64.b64encode(np.ones((rows, width), np.float32).tobytes()).decode()}


def sizes(res, tmp):
    ck = res.check
    d = start(tmp, "sizes", {"max_json_body": 4096, "max_upload": 8192, "max_elements": 128,
                             "max_rows": 2, "max_json_depth": 8, "max_set": 2,
                             "max_header_bytes": 8192})
    try:
        r = d.post("/v1/apply", {"layer": "mid.proj", "input": {"shape": [1, 64], "data": [0] * 64},
                                 "pad": "x" * 5000})
        ck(r.status == 413 and r.code == "body_too_large", "max_json_body: 413 (%d)" % r.status)
        up = open(os.path.join(F, "adapters", "lora.safetensors"), "rb").read()
        r = d.request("PUT", "/v1/adapters/x", body=up,
                      headers={"Content-Type": "application/octet-stream"})
        ck(r.status == 413 and r.code == "body_too_large", "max_upload: 413 (%d)" % r.status)
        r = d.post("/v1/apply", {"layer": "up.prime", "input": b64rows(1, 128)})
        ck(r.status == 200, "128 elements allowed (%d)" % r.status)
        r = d.post("/v1/apply", {"layer": "up.prime", "input": b64rows(2, 128)})
        ck(r.status == 400 and r.code == "bad_input", "max_elements: 400 bad_input (%d)" % r.status)
        r = d.post("/v1/apply", {"layer": "mid.odd", "input": b64rows(2, 60)})
        ck(r.status == 400 and r.code == "too_large",
           "output over max_elements: 400 too_large (%d %s)" % (r.status, r.code))
        r = d.post("/v1/apply", {"layer": "down.ff.proj", "input": b64rows(1, 80)})
        ck(r.status == 400 and r.code == "too_large", "320 outputs > 128: too_large (%d)" % r.status)
        d2 = d.post("/v1/apply", {"layer": "up.shortcut", "input": {"shape": [3, 32, 1, 1], "data": [0] * 96}},
                    check=False)
        ck(d2.status == 400 and d2.code == "too_large" or d2.code == "too_many_rows",
           "conv rows over max_rows (%d %s)" % (d2.status, d2.code))
        r = d.post("/v1/apply", {"layer": "mid.proj", "input": {"shape": [3, 1], "data": [0] * 3}},
                   check=False)
        ck(r.status == 400, "wrong width still 400 (%d)" % r.status)
        body = b'{"layer":"mid.proj","x":' + b"[" * 9 + b"]" * 9 + b"}"
        r = d.request("POST", "/v1/apply", body=body, headers={"Content-Type": "application/json"},
                      check=False)
        ck(r.status == 400 and r.code == "too_deep", "max_json_depth: 400 too_deep (%d)" % r.status)
        r = d.post("/v1/merge", {"adapters": [], "layers": [[[[[[[[["x"]]]]]]]]]})
        ck(r.status == 400 and r.code == "too_deep", "merge body depth: 400 too_deep (%d)" % r.status)
        r = d.post("/v1/apply", {"layer": "mid.proj", "input": {"shape": [1, 64], "data": [0] * 64},
                                 "adapters": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
        ck(r.status == 400 and r.code == "bad_request", "max_set: 400 (%d)" % r.status)
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        got = s.recv(100)
        s.close()
        ck(got.startswith(b"HTTP/1.1 431") or got.startswith(b"HTTP/1.1 414") or got == b"",
           "max_header_bytes 8K: a 20 KB header refused (%r)" % got[:20])
        ck(d.get("/healthz").status == 200, "healthz after the size limits")
    finally:
        ck(d.stop() == 0, "sizes: exit 0")


def connections(res, tmp):
    ck = res.check
    d = start(tmp, "conns", {"max_connections_per_ip": 4, "idle_timeout_s": 1,
                             "request_timeout_s": 3})
    try:
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(4)]
        extra = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        ck(closed(extra, 2), "5th connection from one address: closed by max_connections_per_ip")
        t0 = time.time()
        ck(all(closed(s, 4) for s in socks), "idle connections closed by idle_timeout_s")
        ck(time.time() - t0 < 4, "idle close within about 1 s (%.1f s)" % (time.time() - t0))
        ck(d.get("/healthz").status == 200, "new connection after the idle ones closed")
        # A request trickled one byte a half-second: the idle timer restarts
        # at every byte, the request timeout does not.
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        t0 = time.time()
        shut = False
        for ch in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: bbbbbbbbbbbbbbbbbbbbbbbbbb\r\n":
            try:
                s.sendall(bytes([ch]))
            except OSError:
                shut = True
                break
            time.sleep(0.5)
            if time.time() - t0 > 8:
                break
        ck(shut or closed(s, 2), "trickled request closed by request_timeout_s")
        ck(time.time() - t0 < 6.5, "within about 3 s (%.1f s)" % (time.time() - t0))
        s.close()
    finally:
        ck(d.stop() == 0, "connections: exit 0")
    d = start(tmp, "conns2", {"max_connections": 3})
    try:
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        extra.settimeout(1)
        try:
            early = extra.recv(12)
        except socket.timeout:
            early = None
        ck(early is None, "4th connection waits in the backlog at max_connections (%r)" % early)
        for s in socks:
            s.close()
        extra.settimeout(10)
        try:
            late = extra.recv(12)
        except socket.timeout:
            late = b"timeout"
        ck(late.startswith(b"HTTP/1.1 200"), "served once the others closed (%r)" % late)
        extra.close()
        ck(d.get("/healthz", timeout=10).status == 200, "new connections served again")
    finally:
        ck(d.stop() == 0, "max_connections: exit 0")


def default_per_ip(res, tmp):
    ck = res.check
    d = start(tmp, "defaults", {})
    try:
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(300)]
        for s in socks[::30]:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ok = sum(s.recv(12).startswith(b"HTTP/1.1 200") for s in socks[::30])
        ck(ok == 10, "default per-IP limit >= 256: 300 connections from 127.0.0.1 served (%d/10)" % ok)
        for s in socks:
            s.close()
    finally:
        ck(d.stop() == 0, "defaults: exit 0")


def slow_base(tmp):
    rng = np.random.default_rng(3)
    p = os.path.join(tmp, "slow_base.safetensors")
    L.st_write(p, {"big.weight": rng.standard_normal((1536, 1536)).astype(np.float32)})
    return p


def overload(res, tmp):
    ck = res.check
    base = slow_base(tmp)
    req = {"layer": "big", "input": b64rows(256, 1536)}

    def burst(d, n=12):
        with cf.ThreadPoolExecutor(n) as ex:
            return list(ex.map(lambda _: d.post("/v1/apply", req, timeout=120), range(n)))

    for name, limits, code in (("inflight", {"max_inflight": 2}, "overloaded"),
                               ("queue", {"max_queue": 1}, "overloaded"),
                               ("deadline", {"compute_deadline_ms": 60}, "deadline_exceeded")):
        d = start(tmp, name, limits, base=base, threads=1)
        try:
            rs = burst(d)
            sts = sorted(r.status for r in rs)
            rej = [r for r in rs if r.status == 503]
            ck(rej and all(r.code == code and r.header("Retry-After") for r in rej),
               "%s: 503 %s with Retry-After (%s)" % (name, code, sts))
            ck(all(r.status in (200, 503) for r in rs), "%s: the others 200 (%s)" % (name, sts))
            time.sleep(0.5)
            ck(d.get("/healthz").status == 200, "%s: healthz after the burst" % name)
            if name != "deadline":
                r = d.post("/v1/apply", req, timeout=120)
                ck(r.status == 200, "%s: a lone request afterwards 200 (%d)" % (name, r.status))
        finally:
            ck(d.stop() == 0, "%s: exit 0" % name)


def main():
    res = L.Results("limits")
    tmp = tempfile.mkdtemp(prefix="lokrd-limits-")
    try:
        sizes(res, tmp)
        connections(res, tmp)
        default_per_ip(res, tmp)
        overload(res, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
