#!/usr/bin/env python3
"""Tenants against the real lokrd (issue 6): bearer tokens (plain and
sha256:), 401/403, the admin token, and a matrix showing that no tenant can
list, read, apply, merge, load, replace or delete another tenant's adapter by
any id spelling (../, %2e%2e, encoded slashes, absolute paths, NUL, overlong,
unicode lookalikes, case variants, double encoding).  After the matrix the
victim's file is byte-identical and still serves the victim.  Quotas:
adapter count, disk bytes, resident bytes, requests per second (429 with
Retry-After).  Listening: a non-loopback address without tokens is refused
unless allow_open; SIGHUP reloads rotated tokens."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")
ADAPTER = os.path.join(F, "adapters", "lokr_balanced.safetensors")
OTHER = os.path.join(F, "adapters", "lora.safetensors")

TOK = {
    "alice": "alice-token-0123456789",
    "bob": "bob-token-abcdefghijklmn",
    "carol": "carol-token-zzzzzzzzzzzz",
    "dave": "dave-token-rate-limited-1",
    "erin": "erin-token-disk-quota-01",
    "admin": "admin-token-0123456789abcdef",
}

# Spellings of bob's adapter "secret" that alice might try (as URL path
# segments; the JSON forms use the decoded text).
SPELLINGS = [
    "secret/../../bob/secret", "..%2fbob%2fsecret", "%2e%2e/bob/secret",
    "%2e%2e%2fbob%2fsecret", "%2E%2E%2Fbob%2Fsecret", "..%5cbob%5csecret",
    "bob%2fsecret", "%2fbob%2fsecret", "%2F" + "%2F".join(["tmp", "x"]),
    "secret%00", "secret%00.safetensors", "%00secret", "secret%2500",
    "SECRET", "Secret", "sEcReT",
    "%EF%BD%93%EF%BD%85%EF%BD%83%EF%BD%92%EF%BD%85%EF%BD%94",  # fullwidth "secret"
    "s%D0%B5cret",  # Cyrillic e
    "secret%E2%80%8B",  # zero-width space
    "%252e%252e%252fbob%252fsecret",  # double-encoded
    "..", ".", "...", "./secret", ".secret", "-secret", "_secret",
    "secret.safetensors", "secret%20", "%20secret", "secret%0a",
    "s" * 129, "a" * 5000,
    "bob:secret", "bob%3asecret", "~bob", "secret;bob", "secret?x=../bob",
]
JSON_IDS = ["../bob/secret", "..\\bob\\secret", "bob/secret", "/abs/bob/secret",
            "secret\u0000", "SECRET", "\uff53\uff45\uff43\uff52\uff45\uff54", "s\u0435cret",
            "%2e%2e%2fbob%2fsecret", "..", ".", "", "s" * 129, "secret ", " secret"]


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def filehash(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def raw(port, data, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    buf = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
            m = re.search(rb"(?i)content-length:\s*(\d+)", buf)
            if b"\r\n\r\n" in buf and m and len(buf.split(b"\r\n\r\n", 1)[1]) >= int(m.group(1)):
                break
    except socket.timeout:
        pass
    s.close()
    m = re.match(rb"HTTP/1\.[01] (\d+)", buf)
    return int(m.group(1)) if m else 0


class Client:
    def __init__(self, d, token=None, tenant=None):
        self.d = d
        self.h = {}
        if token:
            self.h["Authorization"] = "Bearer " + token
        if tenant:
            self.h["X-Lokrd-Tenant"] = tenant

    def req(self, method, path, body=None, headers=None):
        h = dict(self.h)
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        return self.d.request(method, path, body=body, headers=h)

    def apply(self, ids):
        x = np.ones((1, 64), np.float32)
        return self.req("POST", "/v1/apply", {"layer": "mid.proj", "adapters": [{"id": i} for i in ids],
                                             "input": L.tensor_json(x)})

    def merge(self, ids):
        return self.req("POST", "/v1/merge", {"adapters": [{"id": i} for i in ids],
                                             "layers": ["mid.proj"]})


def config(tmp, **extra):
    cfg = {
        "tenants": {
            "alice": {"tokens": [TOK["alice"]], "max_adapters": 3},
            "bob": {"tokens": ["sha256:" + sha(TOK["bob"])]},
            "carol": {"tokens": [TOK["carol"]], "max_resident_bytes": 4096,
                      "max_disk_bytes": 40000},
            "dave": {"tokens": [TOK["dave"]], "requests_per_second": 2, "burst": 3},
            "erin": {"tokens": [TOK["erin"]], "max_disk_bytes": 25000},
        },
        "admin_tokens": ["sha256:" + sha(TOK["admin"])],
    }
    cfg.update(extra)
    p = os.path.join(tmp, "config.json")
    with open(p, "w") as f:
        json.dump(cfg, f)
    return p


def main():
    res = L.Results("tenants")
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-tenants-")
    adir = os.path.join(tmp, "adapters")
    os.makedirs(os.path.join(adir, "bob"))
    secret = os.path.join(adir, "bob", "secret.safetensors")
    shutil.copy(ADAPTER, secret)
    before = filehash(secret)
    d = L.Lokrd(BASE, adir, extra=["--config", config(tmp), "--threads", "2"],
                contract=L.Contract(), results=res)
    try:
        run(d, res, ck, adir, secret, before, tmp)
    finally:
        rc = d.stop()
        ck(rc == 0, "lokrd exited with %s" % rc)
    listen_rules(res, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


def run(d, res, ck, adir, secret, before, tmp):
    alice, bob = Client(d, TOK["alice"]), Client(d, TOK["bob"])
    admin = Client(d, TOK["admin"])
    anon, wrong = Client(d), Client(d, "not-a-token-at-all-xx")

    # --- authentication -----------------------------------------------------
    ck(anon.req("GET", "/healthz").status == 200, "healthz needs no token")
    ck(anon.req("GET", "/readyz").status == 200, "readyz needs no token")
    for c, who in ((anon, "no token"), (wrong, "a wrong token")):
        for m, p in (("GET", "/v1/adapters"), ("GET", "/v1/adapters/secret"),
                     ("GET", "/v1/model"), ("GET", "/metrics"), ("DELETE", "/v1/adapters/secret")):
            r = c.req(m, p)
            ck(r.status == 401 and r.code == "unauthorized", "%s %s with %s: 401 (%d)" %
               (m, p, who, r.status))
        r = c.req("GET", "/v1/adapters")
        ck((r.header("WWW-Authenticate") or "").startswith("Bearer"), "401 has WWW-Authenticate")
    ck(Client(d, TOK["alice"] + "x").req("GET", "/v1/adapters").status == 401,
       "token with an extra character: 401")
    ck(Client(d, TOK["alice"][:-1]).req("GET", "/v1/adapters").status == 401,
       "token missing a character: 401")
    ck(d.request("GET", "/v1/adapters", headers={"Authorization": "Basic " + TOK["alice"]},
                 check=False).status == 401, "Basic scheme: 401")
    ck(d.request("GET", "/v1/adapters", headers={"Authorization": "bearer " + TOK["alice"]},
                 check=False).status == 200, "scheme is case-insensitive")
    ck(bob.req("GET", "/v1/adapters").status == 200, "sha256: token form accepted")
    ck(alice.req("GET", "/v1/model").status == 200, "a tenant may read /v1/model")
    r = alice.req("GET", "/metrics")
    ck(r.status == 403 and r.code == "forbidden", "tenant on /metrics: 403 (%d)" % r.status)
    ck(admin.req("GET", "/metrics").status == 200, "admin on /metrics: 200")
    r = admin.req("GET", "/v1/adapters")
    ck(r.status == 400 and r.code == "tenant_required", "admin without X-Lokrd-Tenant: 400")
    r = Client(d, TOK["alice"], "bob").req("GET", "/v1/adapters")
    ck(r.status == 403 and r.code == "forbidden", "alice acting as bob: 403 (%d)" % r.status)
    ck(Client(d, TOK["alice"], "alice").req("GET", "/v1/adapters").status == 200,
       "alice naming herself: 200")
    r = Client(d, TOK["admin"], "nobody").req("GET", "/v1/adapters")
    ck(r.status == 404 and r.code == "tenant_not_found", "admin naming no tenant: 404")
    asbob = Client(d, TOK["admin"], "bob")
    r = asbob.req("GET", "/v1/adapters/secret")
    ck(r.status == 200, "admin reads bob's adapter through X-Lokrd-Tenant (%d)" % r.status)

    # --- bob's own view -----------------------------------------------------
    r = bob.apply(["secret"])
    ck(r.status == 200, "bob applies his adapter (%d %s)" % (r.status, r.body[:200]))
    bob_out = r.json()["output"] if r.status == 200 else None
    ck(["secret"] == [a["id"] for a in bob.req("GET", "/v1/adapters").json()["adapters"]],
       "bob lists his adapter")

    # --- the matrix: alice against bob's "secret" ------------------------------
    tried = 0
    leaks = []
    paths = ["secret"] + SPELLINGS
    for sp in paths:
        for m, p, body in (("GET", "/v1/adapters/" + sp, None),
                           ("POST", "/v1/adapters/" + sp + "/load", {}),
                           ("DELETE", "/v1/adapters/" + sp, None),
                           ("PUT", "/v1/adapters/" + sp, b"not a safetensors file")):
            h = {"Content-Type": "application/octet-stream"} if m == "PUT" else None
            req = "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" % (m, p, TOK["alice"])
            data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
            if data:
                req += "Content-Type: %s\r\n" % ("application/octet-stream" if m == "PUT" else "application/json")
            req += "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data)
            st = raw(d.port, req.encode() + data)
            tried += 1
            if st in (200, 201, 204) or st == 0 or st >= 500:
                leaks.append("%s %s -> %d" % (m, p[:60], st))
            del h
    for jid in ["secret"] + JSON_IDS:
        for op in (alice.apply, alice.merge):
            r = op([jid])
            tried += 1
            if r.status not in (400, 404):
                leaks.append("%s %r -> %d" % (op.__name__, jid[:40], r.status))
    ck(not leaks, "no spelling reaches bob's adapter (%d tried): %s" % (tried, leaks[:8]))
    lst = alice.req("GET", "/v1/adapters").json()["adapters"]
    ck(all(a["id"] != "secret" for a in lst), "alice's list does not show bob's adapter")
    ck(filehash(secret) == before, "bob's file is byte-identical after the matrix")
    r = bob.apply(["secret"])
    ck(r.status == 200 and r.json()["output"] == bob_out, "bob's adapter still serves bob, same output")
    ck(d.get("/healthz").status == 200, "healthz after the matrix")
    print("  isolation matrix: %d requests by alice, %d spellings" % (tried, len(paths) + len(JSON_IDS)))

    # --- same id in two namespaces -------------------------------------------
    other = open(OTHER, "rb").read()
    r = alice.req("PUT", "/v1/adapters/secret", other, {"Content-Type": "application/octet-stream"})
    ck(r.status == 201, "alice creates her own 'secret' (201, %d)" % r.status)
    ck(os.path.exists(os.path.join(adir, "alice", "secret.safetensors")), "in DIR/alice/")
    ck(filehash(secret) == before, "bob's file untouched by alice's PUT of the same id")
    ra, rb = alice.apply(["secret"]), bob.apply(["secret"])
    ck(ra.status == 200 and rb.status == 200 and ra.json()["output"] != rb.json()["output"],
       "same id, two tenants, two different adapters")
    ck(alice.req("DELETE", "/v1/adapters/secret").status == 204, "alice deletes her 'secret'")
    ck(os.path.exists(secret) and filehash(secret) == before, "bob's survives alice's DELETE")
    ck(bob.apply(["secret"]).status == 200, "bob still applies after alice's DELETE")

    # --- quotas -------------------------------------------------------------
    small = open(os.path.join(F, "adapters", "lokr_factor8.safetensors"), "rb").read()
    oct_ = {"Content-Type": "application/octet-stream"}
    sts = [alice.req("PUT", "/v1/adapters/q%d" % i, small, oct_).status for i in range(4)]
    ck(sts[:3] == [201, 201, 201], "alice: 3 adapters fit her quota (%s)" % sts)
    r = alice.req("PUT", "/v1/adapters/q9", small, oct_)
    ck(r.status == 429 and r.code == "quota_exceeded", "4th adapter: 429 quota_exceeded (%d)" % r.status)
    ck(not os.path.exists(os.path.join(adir, "alice", "q9.safetensors")), "nothing left by the 429")
    ck(alice.req("PUT", "/v1/adapters/q0", small, oct_).status == 200,
       "replacing within the count quota: 200")
    erin = Client(d, TOK["erin"])
    sts = [erin.req("PUT", "/v1/adapters/e%d" % i, small, oct_).status for i in range(2)]
    ck(sts == [201, 201], "erin: two small adapters fit 25000 bytes (%s)" % sts)
    r = erin.req("PUT", "/v1/adapters/e2", small, oct_)
    ck(r.status == 429 and r.code == "quota_exceeded" and "disk" in r.json()["error"]["message"],
       "erin's third: 429 over the disk quota (%d)" % r.status)
    r = erin.req("PUT", "/v1/adapters/big", open(OTHER, "rb").read(), oct_)
    ck(r.status == 429, "an upload larger than the disk quota: 429 (%d)" % r.status)
    ck(sorted(os.listdir(os.path.join(adir, "erin"))) == ["e0.safetensors", "e1.safetensors"],
       "erin's directory holds only what fit")
    carol = Client(d, TOK["carol"])
    r = carol.req("PUT", "/v1/adapters/one", open(OTHER, "rb").read(), oct_)
    ck(r.status == 429 and "resident" in r.json()["error"]["message"],
       "carol's upload over her resident quota: 429 (%d)" % r.status)
    # resident quota: a file dropped in carol's directory that needs more than 4096 bytes
    shutil.copy(ADAPTER, os.path.join(adir, "carol", "dropped.safetensors"))
    r = carol.apply(["dropped"])
    ck(r.status == 429 and r.code == "quota_exceeded" and r.header("Retry-After"),
       "adapter over carol's resident quota: 429 with Retry-After (%d %s)" % (r.status, r.code))
    dave = Client(d, TOK["dave"])
    sts, ra = [], None
    for _ in range(8):
        r = dave.req("GET", "/v1/adapters")
        sts.append(r.status)
        if r.status == 429:
            ra = r.header("Retry-After")
    ck(sts[:3] == [200, 200, 200] and 429 in sts, "dave: burst 3 then 429 (%s)" % sts)
    ck(ra is not None and int(ra) >= 1, "rate 429 has Retry-After >= 1 (%s)" % ra)
    time.sleep(1.1)
    ck(dave.req("GET", "/v1/adapters").status == 200, "dave: a token again after a second")
    ck(alice.req("GET", "/v1/adapters").status == 200, "alice unaffected by dave's rate")

    # --- SIGHUP: rotated token ------------------------------------------------
    cfgp = os.path.join(tmp, "config.json")
    cfg = json.load(open(cfgp))
    cfg["tenants"]["alice"]["tokens"] = ["alice-rotated-token-99"]
    json.dump(cfg, open(cfgp, "w"))
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and Client(d, "alice-rotated-token-99").req(
            "GET", "/v1/adapters").status != 200:
        time.sleep(0.1)
    ck(Client(d, "alice-rotated-token-99").req("GET", "/v1/adapters").status == 200,
       "SIGHUP: the rotated token works")
    ck(alice.req("GET", "/v1/adapters").status == 401, "SIGHUP: the old token is refused")
    ck(bob.apply(["secret"]).status == 200, "SIGHUP: bob unaffected")


def listen_rules(res, tmp):
    ck = res.check
    adir = os.path.join(tmp, "open")
    os.makedirs(adir, exist_ok=True)
    argv = [L.LOKRD, "--base", BASE, "--adapters", adir, "--listen", "0.0.0.0:0"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    ck(p.returncode == 2 and "refusing to listen" in p.stderr,
       "no tokens + 0.0.0.0: refused, exit 2 (%d)" % p.returncode)
    cfg = os.path.join(tmp, "open.json")
    for extra, what in (({"allow_open": True}, "allow_open"),
                        ({"admin_tokens": [TOK["admin"]]}, "tokens")):
        with open(cfg, "w") as f:
            json.dump(extra, f)
        q = subprocess.Popen(argv + ["--config", cfg], stderr=subprocess.PIPE, text=True)
        line, deadline = "", time.time() + 20
        while "listening on" not in line and time.time() < deadline and q.poll() is None:
            line = q.stderr.readline()
        ck("listening on 0.0.0.0" in line, "0.0.0.0 with %s: listens" % what)
        m = re.search(r":(\d+)\s*$", line)
        while m and time.time() < deadline:  # SIGTERM once the handlers are up
            try:
                if raw(int(m.group(1)), b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: close\r\n\r\n") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        q.send_signal(signal.SIGTERM)
        ck(q.wait(30) == 0, "0.0.0.0 with %s: exit 0" % what)
        q.stderr.close()
    for bad, what in (({"tenants": {"x": {"tokens": ["short"]}}}, "short plain token"),
                      ({"tenants": {"x": {"tokens": ["sha256:abcd"]}}}, "bad sha256"),
                      ({"tenants": {"../x": {"tokens": [TOK["alice"]]}}}, "tenant name ../x"),
                      ({"tenants": {"a": {"tokens": [TOK["alice"]]}, "b": {"tokens": [TOK["alice"]]}}},
                       "a token in two tenants"),
                      ({"tenants": {"a": {"tokens": [TOK["alice"]], "bogus": 1}}}, "unknown quota key"),
                      ({"limits": {"max_rows": 0}}, "limits.max_rows 0"),
                      ({"limits": {"nope": 1}}, "unknown limit")):
        with open(cfg, "w") as f:
            json.dump(bad, f)
        p = subprocess.run([L.LOKRD, "--base", BASE, "--adapters", adir, "--config", cfg],
                           capture_output=True, text=True, timeout=30)
        ck(p.returncode == 2 and "config" in p.stderr, "config with %s: exit 2 (%d)" % (what, p.returncode))


if __name__ == "__main__":
    sys.exit(main())
