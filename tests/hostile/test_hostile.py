#!/usr/bin/env python3
"""Hostile input against the REAL lokrd (issue 6).

Files: every malformed safetensors file of tests/data/bad-containers (the
container attacks of reliability.md 5.6) and tests/data/gen/bad (adapters
that break lycoris-format.md 9.23-24: shapes, ranks, NaN/Inf, DoRA, modules
that fit no layer; tests/data/gen/cases.json names the module each message
must mention), each
  - uploaded with PUT: 422 adapter_invalid (the message names the module),
    nothing left in the directory, the id still unknown (404);
  - dropped into the directory: GET answers 422 adapter_invalid with the
    same message twice (and the module named), apply answers 422, the
    listing still answers 200 and marks the entry with its error.
Requests: malformed JSON, wrong types, missing fields, non-finite inputs,
wrong shapes, unknown layers and adapters, hostile ids in paths and bodies,
wrong content types, oversized, too deep, too many rows, huge headers and
slowly-sent bodies; each with its exact status and error code.
After every file and every request: /healthz answers and a known good
apply returns exactly the reference output."""
import base64
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")
GOOD = "lokr_balanced"
SRC = L.TOP_SRCDIR


def raw(port, data, timeout=10, send_slowly=None):
    """Send bytes (optionally some slowly); return (status, body) or (0, b'')
    when the server closed without an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if send_slowly:
            chunk, delay, count = send_slowly
            for _ in range(count):
                time.sleep(delay)
                s.sendall(chunk)
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
            head, sep, body = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if sep and m and len(body) >= int(m.group(1)):
                break
    except OSError:
        buf = b""
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d+)", buf)
    return (int(m.group(1)), buf.partition(b"\r\n\r\n")[2]) if m else (0, b"")


def code_of(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


class Hostile:
    def __init__(self, d, res, adir):
        self.d, self.res, self.adir = d, res, adir
        self.x = np.linspace(-1, 1, 2 * 64, dtype=np.float32).reshape(2, 64)
        r = self.apply_good()
        assert r.status == 200, r.body
        self.ref = r.body_json_output = r.json()["output"]
        self.after = 0

    def apply_good(self):
        return self.d.post("/v1/apply", {"layer": "mid.proj", "adapters": [{"id": GOOD}],
                                         "input": L.tensor_json(self.x)})

    def still_fine(self, what):
        """healthz + the good request, exactly."""
        h = self.d.get("/healthz")
        g = self.apply_good()
        self.after += 1
        ok = h.status == 200 and g.status == 200 and g.json()["output"] == self.ref
        return self.res.check(ok, "after %s: healthz %d, good apply %d%s" % (
            what, h.status, g.status, "" if ok else " " + g.body[:200].decode(errors="replace")))


def bad_files():
    """(name, path, expect-substring or None) for every malformed file."""
    out = []
    cases = json.load(open(os.path.join(SRC, "tests", "data", "gen", "cases.json")))
    for b in cases["bad"]:
        exp = b.get("expect")
        if exp and exp.endswith(".safetensors"):
            exp = None  # the container cases name the file, which we rename
        out.append((b["name"], os.path.join(SRC, b["file"]), exp))
    bc = os.path.join(SRC, "tests", "data", "bad-containers")
    for f in sorted(os.listdir(bc)):
        if f.endswith(".safetensors"):
            out.append(("bc_" + f[:-12].replace("-", "_"), os.path.join(bc, f), None))
    # A few more, made here: a header claiming a 2^40-element tensor, a
    # header length of 2^63, a valid file with a NaN dora_scale.
    h = json.dumps({"lycoris_mid_proj.lokr_w1": {"dtype": "F32", "shape": [1 << 20, 1 << 20],
                                                 "data_offsets": [0, 16]}}).encode()
    out.append(("gen_huge_shape", struct.pack("<Q", len(h)) + h + b"\0" * 16, None))
    out.append(("gen_len_2p63", struct.pack("<Q", 1 << 63) + b"{}", None))
    t, _ = L.st_read(os.path.join(F, "adapters", "lokr_dora.safetensors"))
    k = [n for n in t if n.endswith("dora_scale")][0]
    t[k] = t[k].copy()
    t[k].flat[0] = np.nan
    out.append(("gen_nan_dora", L.st_write(None, t), k.split(".")[0]))
    return out


def files(h, d, res, ck):
    n = 0
    for name, src, expect in bad_files():
        data = src if isinstance(src, bytes) else open(src, "rb").read()
        r = d.request("PUT", "/v1/adapters/" + name, body=data,
                      headers={"Content-Type": "application/octet-stream"})
        msg = r.json()["error"]["message"] if r.code else ""
        ck(r.status == 422 and r.code == "adapter_invalid",
           "PUT %s: 422 adapter_invalid (%d %s %s)" % (name, r.status, r.code, msg[:120]))
        if expect:
            ck(expect in msg, "PUT %s: message names %s (%s)" % (name, expect, msg[:160]))
        ck(sorted(os.listdir(h.adir)) == [GOOD + ".safetensors"],
           "PUT %s: nothing left in the directory (%s)" % (name, os.listdir(h.adir)))
        ck(d.get("/v1/adapters/" + name).status == 404, "PUT %s: id unknown" % name)
        h.still_fine("PUT " + name)
        # dropped into the directory
        path = os.path.join(h.adir, name + ".safetensors")
        with open(path, "wb") as f:
            f.write(data)
        r1 = d.get("/v1/adapters/" + name)
        r2 = d.get("/v1/adapters/" + name)
        m1 = r1.json()["error"]["message"] if r1.code else ""
        ck(r1.status == 422 and r1.code == "adapter_invalid" and r2.body == r1.body,
           "dropped %s: 422 adapter_invalid, the same twice (%d %d)" % (name, r1.status, r2.status))
        if expect:
            ck(expect in m1, "dropped %s: message names %s (%s)" % (name, expect, m1[:160]))
        r = d.post("/v1/apply", {"layer": "mid.proj", "adapters": [{"id": GOOD}, {"id": name}],
                                 "input": L.tensor_json(h.x)})
        ck(r.status == 422 and r.code == "adapter_invalid", "apply with dropped %s: 422" % name)
        lst = d.get("/v1/adapters")
        ent = [a for a in lst.json()["adapters"] if a["id"] == name] if lst.status == 200 else []
        ck(lst.status == 200 and ent and ent[0].get("error"), "listing marks %s with its error" % name)
        os.unlink(path)
        h.still_fine("dropped " + name)
        n += 1
    return n


def requests(h, d, res, ck, limits):
    port = d.port
    good_in = L.tensor_json(np.ones((1, 64), np.float32))

    def body(o):
        return o if isinstance(o, bytes) else json.dumps(o).encode()

    def post(path, o, ct="application/json", extra=b""):
        b = body(o)
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n" % (path, ct, len(b))).encode() + extra + b"\r\n"
        return raw(port, head + b)

    def get(path, method="GET", extra=b""):
        return raw(port, ("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method, path)).encode()
                   + extra + b"\r\n")

    def ap(**kw):
        o = {"layer": "mid.proj", "input": good_in}
        o.update(kw)
        return {k: v for k, v in o.items() if v is not None}

    f32inf = base64.b64encode(struct.pack("<64f", *([1.0] * 63 + [float("inf")]))).decode()
    f16nan = base64.b64encode(b"\x00\x7e" * 64).decode()
    cases = [
        ("bad JSON", lambda: post("/v1/apply", b'{"layer": '), 400, "bad_json"),
        ("trailing garbage", lambda: post("/v1/apply", body(ap()) + b"x"), 400, "bad_json"),
        ("NaN literal", lambda: post("/v1/apply", b'{"layer":"mid.proj","input":{"shape":[1],"data":[NaN]}}'),
         400, "bad_json"),
        ("top level array", lambda: post("/v1/apply", b"[1,2]"), 400, "bad_json"),
        ("empty body", lambda: post("/v1/apply", b""), 400, "bad_json"),
        ("duplicate key", lambda: post("/v1/apply", b'{"layer":"mid.proj","layer":"mid.odd"}'), 400, "bad_json"),
        ("invalid UTF-8", lambda: post("/v1/apply", b'{"layer":"mid\xff"}'), 400, "bad_json"),
        ("unknown field", lambda: post("/v1/apply", ap(extra=1)), 400, "bad_request"),
        ("missing layer", lambda: post("/v1/apply", ap(layer=None)), 400, "bad_request"),
        ("layer is a number", lambda: post("/v1/apply", ap(layer=5)), 400, "bad_request"),
        ("unknown layer", lambda: post("/v1/apply", ap(layer="mid.nothere")), 404, "layer_not_found"),
        # jansson refuses \u0000 in strings: a NUL never reaches a lookup.
        ("layer with NUL", lambda: post("/v1/apply", ap(layer="mid.proj\u0000x")), 400, "bad_json"),
        ("missing input", lambda: post("/v1/apply", ap(input=None)), 400, "bad_request"),
        ("input is a list", lambda: post("/v1/apply", ap(input=[1, 2])), 400, "bad_input"),
        ("wrong input width", lambda: post("/v1/apply", ap(input={"shape": [1, 63], "data": [0] * 63})),
         400, "bad_input_shape"),
        ("data count != shape", lambda: post("/v1/apply", ap(input={"shape": [1, 64], "data": [0] * 10})),
         400, "bad_input"),
        ("data has a string", lambda: post("/v1/apply", ap(input={"shape": [1, 64], "data": ["1"] * 64})),
         400, "bad_input"),
        ("f32 overflow 1e39", lambda: post("/v1/apply", ap(input={"shape": [1, 64], "data": [1e39] * 64})),
         400, "bad_input"),
        ("f16 overflow 1e6", lambda: post("/v1/apply", ap(input={"dtype": "f16", "shape": [1, 64],
                                                                 "data": [1e6] * 64})), 400, "bad_input"),
        ("b64 with +inf", lambda: post("/v1/apply", ap(input={"dtype": "f32", "shape": [1, 64], "b64": f32inf})),
         400, "bad_input"),
        ("b64 f16 NaN", lambda: post("/v1/apply", ap(input={"dtype": "f16", "shape": [1, 64], "b64": f16nan})),
         400, "bad_input"),
        ("b64 wrong length", lambda: post("/v1/apply", ap(input={"dtype": "f32", "shape": [1, 64], "b64": "AAAA"})),
         400, "bad_input"),
        ("b64 bad characters", lambda: post("/v1/apply", ap(input={"dtype": "f32", "shape": [1, 1], "b64": "!!!!!!"})),
         400, "bad_input"),
        ("dtype f64", lambda: post("/v1/apply", ap(input={"dtype": "f64", "shape": [1, 64], "data": [0] * 64})),
         400, "bad_input"),
        ("negative shape", lambda: post("/v1/apply", ap(input={"shape": [-1, 64], "data": []})), 400, "bad_input"),
        ("shape 2^62 elements", lambda: post("/v1/apply", ap(input={"shape": [1 << 31, 1 << 31], "data": []})),
         400, "bad_input"),
        ("nine dims", lambda: post("/v1/apply", ap(input={"shape": [1] * 9, "data": [0]})), 400, "bad_input"),
        ("adapters not a list", lambda: post("/v1/apply", ap(adapters={"id": GOOD})), 400, "bad_request"),
        ("adapter id ../", lambda: post("/v1/apply", ap(adapters=[{"id": "../" + GOOD}])), 400, "bad_request"),
        ("adapter id absolute", lambda: post("/v1/apply", ap(adapters=[{"id": "/etc/passwd"}])), 400, "bad_request"),
        ("adapter id with NUL", lambda: post("/v1/apply", ap(adapters=[{"id": GOOD + "\u0000x"}])),
         400, "bad_json"),
        ("adapter id 129 chars", lambda: post("/v1/apply", ap(adapters=[{"id": "a" * 129}])), 400, "bad_request"),
        ("unknown adapter", lambda: post("/v1/apply", ap(adapters=[{"id": "nothere"}])), 404, "adapter_not_found"),
        ("multiplier string", lambda: post("/v1/apply", ap(adapters=[{"id": GOOD, "multiplier": "1"}])),
         400, "bad_request"),
        ("multiplier 1e39", lambda: post("/v1/apply", ap(adapters=[{"id": GOOD, "multiplier": 1e39}])),
         400, "bad_request"),
        ("too many adapters", lambda: post("/v1/apply", ap(adapters=[{"id": GOOD}] * (limits["max_set"] + 1))),
         400, "bad_request"),
        ("stride on linear", lambda: post("/v1/apply", ap(stride=2)), 400, "bad_request"),
        ("conv padding 65536", lambda: post("/v1/apply", {"layer": "down.resnet.conv1", "padding": 65536,
                                                          "input": {"shape": [1, 32, 1, 1], "data": [0] * 32}}),
         400, "too_large"),
        ("conv dilation too big", lambda: post("/v1/apply", {"layer": "down.resnet.conv1", "dilation": 5000,
                                                             "input": {"shape": [1, 32, 3, 3], "data": [0] * 288}}),
         400, "bad_input_shape"),
        ("too deep JSON", lambda: post("/v1/apply", b'{"layer":' + b"[" * 100 + b"]" * 100 + b"}"), 400, "too_deep"),
        ("too many rows", lambda: post("/v1/apply", ap(input={"shape": [limits["max_rows"] + 1, 64],
                                                              "b64": base64.b64encode(bytes(4 * 64 * (limits["max_rows"] + 1))).decode(),
                                                              "dtype": "f32"})), 400, "too_many_rows"),
        ("text/plain body", lambda: post("/v1/apply", ap(), ct="text/plain"), 415, "unsupported_media_type"),
        ("declared 2 GB body", lambda: raw(port, b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                                b"Content-Length: 2000000000\r\nConnection: close\r\n\r\n{"),
         413, "body_too_large"),
        ("chunked body over the limit", lambda: raw(port, b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                                         + b"".join(b"%x\r\n%s\r\n" % (65536, b" " * 65536) for _ in range(limits["body_chunks"]))
                                                         + b"0\r\n\r\n"), 413, "body_too_large"),
        ("merge bad dtype", lambda: post("/v1/merge", {"adapters": [{"id": GOOD}], "dtype": "f64"}), 400, "bad_request"),
        ("merge unknown layer", lambda: post("/v1/merge", {"adapters": [{"id": GOOD}], "layers": ["x"]}),
         404, "layer_not_found"),
        ("merge layers not a list", lambda: post("/v1/merge", {"adapters": [], "layers": "mid.proj"}),
         400, "bad_request"),
        ("load pin not bool", lambda: post("/v1/adapters/%s/load" % GOOD, {"pin": "yes"}), 400, "bad_request"),
        # %2f decodes to '/' before routing: an id never holds a slash.
        ("path id ..%2f", lambda: get("/v1/adapters/..%2f" + GOOD), 404, "not_found"),
        ("path id %2e%2e", lambda: get("/v1/adapters/%2e%2e"), 400, "bad_adapter_id"),
        ("path id %2e%2e%2f..%2fetc%2fpasswd", lambda: get("/v1/adapters/%2e%2e%2f..%2fetc%2fpasswd"),
         404, "not_found"),
        ("path id absolute", lambda: get("/v1/adapters/%2Fetc%2Fpasswd"), 404, "not_found"),
        ("path id %5c", lambda: get("/v1/adapters/..%5c" + GOOD), 400, "bad_adapter_id"),
        ("path id with %00", lambda: get("/v1/adapters/" + GOOD + "%00"), 400, "bad_adapter_id"),
        ("path id 129 chars", lambda: get("/v1/adapters/" + "a" * 129), 400, "bad_adapter_id"),
        ("path id fullwidth", lambda: get("/v1/adapters/%EF%BD%93"), 400, "bad_adapter_id"),
        ("path extra segment", lambda: get("/v1/adapters/%s/../x" % GOOD), 404, "not_found"),
        ("PUT as JSON", lambda: raw(port, ("PUT /v1/adapters/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                           "Content-Length: 2\r\nConnection: close\r\n\r\n{}").encode()),
         415, "unsupported_media_type"),
        ("PUT over max_upload", lambda: raw(port, ("PUT /v1/adapters/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                                                   "Content-Length: %d\r\nConnection: close\r\n\r\n" % (10 << 30)).encode()),
         413, "body_too_large"),
        ("DELETE unknown", lambda: get("/v1/adapters/nothere", "DELETE"), 404, "adapter_not_found"),
        ("PATCH method", lambda: get("/v1/apply", "PATCH"), 405, "method_not_allowed"),
        ("unknown route", lambda: get("/v2/apply"), 404, "not_found"),
        ("200 KB header", lambda: get("/healthz", extra=b"X-Big: " + b"a" * 200000 + b"\r\n"), 431, None),
        ("100 KB URL", lambda: get("/v1/adapters/" + "a" * 100000), 414, None),
    ]
    n = 0
    for name, fn, st, code in cases:
        got, b = fn()
        # MHD answers a too large header or URL with 431 or 414, or closes.
        if st in (431, 414):
            ok = got in (414, 431, 0)
        else:
            ok = got == st and code_of(b) == code
        ck(ok, "%s: %s %s (got %d %s)" % (name, st, code, got, code_of(b)))
        h.still_fine(name)
        n += 1
    # Slowly-sent bodies and headers: the request timeout closes them.
    t0 = time.time()
    got, _ = raw(port, b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100000\r\n\r\n{", timeout=limits["request_timeout_s"] + 10,
                 send_slowly=(b" ", 0.25, 4 * (limits["request_timeout_s"] + 5)))
    dt = time.time() - t0
    ck(got in (0, 400, 408) and dt < limits["request_timeout_s"] + 4,
       "slowly-sent body closed by the request timeout (%d after %.1fs)" % (got, dt))
    h.still_fine("slow body")
    t0 = time.time()
    got, _ = raw(port, b"GET /healthz HTTP/1.1\r\n", timeout=limits["request_timeout_s"] + 10,
                 send_slowly=(b"X: y\r\n", 0.25, 4 * (limits["request_timeout_s"] + 5)))
    dt = time.time() - t0
    ck(got == 0 and dt < limits["request_timeout_s"] + 4,
       "slowly-sent headers closed by the request timeout (%d after %.1fs)" % (got, dt))
    h.still_fine("slow headers")
    return n + 2


def main():
    res = L.Results("hostile")
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-hostile-")
    adir = os.path.join(tmp, "adapters")
    os.mkdir(adir)
    shutil.copy(os.path.join(F, "adapters", GOOD + ".safetensors"), adir)
    limits = {"max_json_body": "1M", "max_upload": "4M", "max_rows": 16, "max_set": 4,
              "max_json_depth": 32, "request_timeout_s": 2, "max_header_bytes": "64K"}
    cfg = os.path.join(tmp, "config.json")
    with open(cfg, "w") as f:
        json.dump({"limits": limits}, f)
    limits["body_chunks"] = 20  # 1.25 MiB chunked > 1M
    d = L.Lokrd(BASE, adir, extra=["--config", cfg, "--threads", "2"],
                contract=L.Contract(), results=res)
    try:
        h = Hostile(d, res, adir)
        nf = files(h, d, res, ck)
        nr = requests(h, d, res, ck, limits)
        print("  %d malformed files (PUT and dropped), %d hostile requests, %d health checks"
              % (nf, nr, h.after))
        ck(nf >= 40 and nr >= 30, "enough cases (%d files, %d requests)" % (nf, nr))
    finally:
        rc = d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ck(rc == 0, "lokrd exited with %s" % rc)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
