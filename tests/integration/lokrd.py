"""Test harness for the real lokrd on loopback (python3 stdlib + numpy).

- Lokrd: starts daemon/lokrd with --listen 127.0.0.1:0, reads the bound port
  from the "listening on" line on stderr, waits for /readyz, and stops it.
- Contract: proto/openapi.yaml; every response the tests receive is checked
  against it with jsonschema's Draft 2020-12 validator (OpenAPI 3.1 schemas
  are JSON Schema 2020-12): the status must be documented for the route and
  method, and a JSON body must match its schema.
- safetensors read/write with numpy, and small numpy references (linear,
  conv2d).
"""
import base64
import http.client
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time

SKIP = 77

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("SKIP: python3-numpy is not installed")
    sys.exit(SKIP)

TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TOP_BUILDDIR = os.environ.get("top_builddir") or TOP_SRCDIR
LOKRD = os.path.join(TOP_BUILDDIR, "daemon", "lokrd")
FIXTURES = os.path.join(TOP_SRCDIR, "tests", "data", "fixtures")
OPENAPI = os.path.join(TOP_SRCDIR, "proto", "openapi.yaml")


# ------------------------------------------------------------------ results

class Results:
    """Counts checks; prints one line per failure and a summary."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: %s" % what, flush=True)
        return cond

    def finish(self):
        print("%s: %d checks passed, %d failed" % (self.name, self.passed, self.failed),
              flush=True)
        return 1 if self.failed else 0


# ------------------------------------------------------------------ contract

class Contract:
    def __init__(self, path=OPENAPI):
        try:
            import jsonschema
            import yaml
        except ImportError:
            print("SKIP: python3-jsonschema and python3-yaml are needed to check the contract")
            sys.exit(SKIP)
        self.jsonschema = jsonschema
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        assert self.doc["openapi"].startswith("3.1"), "OpenAPI 3.1 expected"
        for name, s in self.doc["components"]["schemas"].items():
            jsonschema.Draft202012Validator.check_schema(s)
        self.resolver = jsonschema.RefResolver.from_schema(self.doc)
        self.templates = []
        for p in self.doc["paths"]:
            rx = "^" + "/".join("[^/]+" if seg.startswith("{") else re.escape(seg)
                                for seg in p.split("/")) + "$"
            self.templates.append((re.compile(rx), p))
        self.checked = 0

    def _resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            _, node = self.resolver.resolve(node["$ref"])
        return node

    def validate(self, method, path, status, ctype, body):
        """Return None if the response matches the contract, else a message."""
        path = path.split("?")[0]
        tpl = None
        for rx, p in self.templates:
            if rx.match(path):
                tpl = p
                break
        if tpl is None:
            if status == 404 or status == 400:
                return self._validate_error(body)
            return "path %s is not in the contract" % path
        ops = self.doc["paths"][tpl]
        op = ops.get(method.lower()) or (ops.get("get") if method == "HEAD" else None)
        if op is None:
            if status == 405:
                return self._validate_error(body)
            return "%s %s is not in the contract" % (method, tpl)
        resp = op["responses"].get(str(status))
        if resp is None:
            return "%s %s: status %d is not documented" % (method, tpl, status)
        resp = self._resolve(resp)
        content = resp.get("content")
        self.checked += 1
        if not content:
            return None if not body else "%s %s %d: unexpected body" % (method, tpl, status)
        mt = (ctype or "").split(";")[0].strip()
        if mt not in content:
            return "%s %s %d: content type %r not documented (%s)" % (
                method, tpl, status, mt, ", ".join(content))
        if mt == "application/json" and method != "HEAD":
            try:
                doc = json.loads(body)
            except ValueError as e:
                return "%s %s %d: body is not JSON: %s" % (method, tpl, status, e)
            schema = content[mt]["schema"]
            v = self.jsonschema.Draft202012Validator(schema, resolver=self.resolver)
            errs = sorted(v.iter_errors(doc), key=lambda e: e.path)
            if errs:
                return "%s %s %d: %s at %s" % (method, tpl, status, errs[0].message,
                                               list(errs[0].path))
        return None

    def _validate_error(self, body):
        schema = {"$ref": "#/components/schemas/Error"}
        v = self.jsonschema.Draft202012Validator(schema, resolver=self.resolver)
        try:
            doc = json.loads(body)
        except ValueError:
            return "error body is not JSON"
        errs = list(v.iter_errors(doc))
        return errs[0].message if errs else None


# ------------------------------------------------------------------ daemon

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def code(self):
        try:
            return self.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None


class Lokrd:
    def __init__(self, base, adapters, extra=(), contract=None, results=None, wait_ready=True,
                 env=None):
        if not os.access(LOKRD, os.X_OK):
            print("SKIP: %s is not built" % LOKRD)
            sys.exit(SKIP)
        self.contract = contract
        self.results = results
        self.argv = [LOKRD, "--base", base, "--adapters", adapters,
                     "--listen", "127.0.0.1:0"] + list(extra)
        e = dict(os.environ)
        e.setdefault("OPENBLAS_NUM_THREADS", "1")
        if env:
            e.update(env)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=e)
        self.log = []
        self.port = None
        deadline = time.time() + 30
        buf = b""
        while self.port is None and time.time() < deadline:
            r, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if not r:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", buf)
            if m:
                self.port = int(m.group(1))
        self.log.append(buf.decode(errors="replace"))
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("lokrd did not report its port:\n" + "".join(self.log))
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()
        if wait_ready:
            self.wait_ready()

    def _read_log(self):
        while True:
            chunk = self.proc.stderr.read1(65536) if hasattr(self.proc.stderr, "read1") \
                else self.proc.stderr.read(4096)
            if not chunk:
                return
            self.log.append(chunk.decode(errors="replace"))

    def logtext(self):
        return "".join(self.log)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = self.request("GET", "/readyz", check=False)
                if r.status == 200:
                    self._wait_log("base attached:", deadline)
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("lokrd not ready:\n" + self.logtext())

    def _wait_log(self, needle, deadline):
        """The log is drained by a thread: readiness can be seen before the
        start-up lines (logged just before and after READY) are read.  Wait
        for them so tests that read the log see it settled."""
        limit = min(deadline, time.time() + 5)
        while needle not in self.logtext() and time.time() < limit:
            if self.proc.poll() is not None:
                return
            time.sleep(0.01)

    def connect(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, check=True, conn=None,
                timeout=60):
        own = conn is None
        c = conn or self.connect(timeout)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            resp = Response(r.status, r.getheaders(), r.read())
        finally:
            if own:
                c.close()
        if check and self.contract:
            msg = self.contract.validate(method, path, resp.status,
                                         resp.header("Content-Type"), resp.body)
            if self.results:
                self.results.check(msg is None, "contract: %s" % msg)
            elif msg:
                raise AssertionError(msg)
        return resp

    def post(self, path, obj, **kw):
        return self.request("POST", path, body=obj, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._drain.join(5)
        return rc


def read_response(s):
    """Read one HTTP/1.x response from socket s (Content-Length bodies) and
    close it; return (status or 0, header text, body bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d+)", head)
    status = int(m.group(1)) if m else 0
    cl = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if cl:
        n = int(cl.group(1))
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    s.close()
    return status, head.decode(errors="replace"), body


# ------------------------------------------------------------------ tensors

def st_read(data):
    """safetensors bytes -> (dict name -> float32 ndarray, metadata)."""
    if isinstance(data, str):
        with open(data, "rb") as f:
            data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    out = {}
    base = 8 + n
    for k, v in hdr.items():
        a, b = v["data_offsets"]
        raw = data[base + a:base + b]
        dt = v["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, "<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, "<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F64":
            arr = np.frombuffer(raw, "<f8").astype(np.float32)
        else:
            continue
        out[k] = arr.reshape(v["shape"]).copy()
    return out, meta


def st_write(path, tensors, meta=None):
    """Write float32/float16 arrays as safetensors."""
    hdr = {}
    blobs = []
    off = 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        dt = {"float32": "F32", "float16": "F16"}[a.dtype.name]
        b = a.astype("<" + a.dtype.str[1:]).tobytes()
        hdr[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    data = struct.pack("<Q", len(h)) + h + b"".join(blobs)
    if path is None:
        return data
    with open(path, "wb") as f:
        f.write(data)
    return data


def bf16_round(a):
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


def tensor_json(a, form="data", dtype="f32"):
    a = np.asarray(a, np.float32)
    if form == "data":
        return {"dtype": dtype, "shape": list(a.shape), "data": [float(v) for v in a.ravel()]}
    if dtype == "f32":
        raw = a.astype("<f4").tobytes()
    elif dtype == "f16":
        raw = a.astype("<f2").tobytes()
    else:
        raw = (bf16_round(a).view(np.uint32) >> 16).astype("<u2").tobytes()
    return {"dtype": dtype, "shape": list(a.shape), "b64": base64.b64encode(raw).decode()}


def tensor_from_json(t):
    shape = t["shape"]
    if "data" in t:
        return np.array(t["data"], np.float32).reshape(shape)
    raw = base64.b64decode(t["b64"])
    if t["dtype"] == "f32":
        a = np.frombuffer(raw, "<f4")
    elif t["dtype"] == "f16":
        a = np.frombuffer(raw, "<f2").astype(np.float32)
    else:
        a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    return a.reshape(shape).copy()


def rel(got, want):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    m = np.max(np.abs(want)) if want.size else 0.0
    d = np.max(np.abs(got - want)) if want.size else 0.0
    return d / m if m > 0 else d


def conv2d_ref(x, w, b, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Naive NCHW cross-correlation (what torch's conv2d computes), float64."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                       j * dw:j * dw + sw * (wo - 1) + 1:sw]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y
