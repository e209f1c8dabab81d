#!/usr/bin/env python3
"""Every route and every error status of lokrd's HTTP API v1, against the real
daemon on 127.0.0.1 (port 0), every response validated against
proto/openapi.yaml.  Also: concurrent requests for different adapters equal
one-by-one results, a bad request beside good ones leaves them unharmed,
single-flight loading, PUT atomicity, the 422-until-the-file-changes rule,
and graceful SIGTERM (requests already received finish with 200, exit 0)."""
import concurrent.futures as cf
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
ADAPTERS = ["lokr_balanced", "lokr_factor8", "lokr_dora", "loha", "lora", "lokr_fp16"]


def raw_request(port, data, read=True, timeout=10):
    """Send raw bytes; return (status, headers text, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    if not read:
        return s
    return L.read_response(s)


def main():
    res = L.Results("api")
    ck = res.check
    contract = L.Contract()
    tmp = tempfile.mkdtemp(prefix="lokrd-api-")
    adir = os.path.join(tmp, "adapters")
    os.mkdir(adir)
    for a in ADAPTERS:
        shutil.copy(os.path.join(F, "adapters", a + ".safetensors"), adir)
    base, _ = L.st_read(BASE)
    rng = np.random.default_rng(1234)
    d = L.Lokrd(BASE, adir, extra=["--threads", "2", "--cache-bytes", "64M"],
                contract=contract, results=res)
    try:
        run(d, res, ck, adir, base, rng, tmp)
    finally:
        rc = d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ck(rc == 0, "lokrd exited with %s" % rc)
    eviction(res, contract)
    disk_full(res, contract)
    command_line(res, contract)
    print("  %d responses checked against proto/openapi.yaml" % contract.checked)
    return res.finish()


def command_line(res, contract):
    """--help, --version, usage errors, a base that fails to load, and a JSON
    config file with the command line winning over it."""
    ck = res.check

    def run(*args, timeout=30):
        return subprocess.run([L.LOKRD] + list(args), capture_output=True, text=True,
                              timeout=timeout)
    p = run("--help")
    ck(p.returncode == 0 and "--adapters" in p.stdout, "--help")
    p = run("--version")
    ck(p.returncode == 0 and p.stdout.startswith("lokrd "), "--version")
    ck(run().returncode == 2, "no arguments: exit 2")
    ck(run("--base", BASE).returncode == 2, "no --adapters: exit 2")
    ck(run("--base", BASE, "--adapters", "/tmp", "--listen", "nope").returncode == 2,
       "bad --listen: exit 2")
    ck(run("--base", BASE, "--adapters", "/tmp", "--threads", "x").returncode == 2,
       "bad --threads: exit 2")
    tmp = tempfile.mkdtemp(prefix="lokrd-cli-")
    try:
        p = run("--base", os.path.join(tmp, "missing.safetensors"), "--adapters", tmp,
                "--listen", "127.0.0.1:0")
        ck(p.returncode == 1 and "cannot load the base" in p.stderr,
           "missing base: exit 1 with a message")
        cfg = os.path.join(tmp, "c.json")
        with open(cfg, "w") as f:
            json.dump({"base": "/nonexistent", "adapters": tmp, "threads": 1,
                       "bogus": 1}, f)
        p = run("--config", cfg)
        ck(p.returncode == 2 and '"bogus"' in p.stderr, "config: unknown key named")
        with open(cfg, "w") as f:
            json.dump({"base": ["/nonexistent"], "adapters": "/nonexistent", "threads": 1,
                       "cache_bytes": "16M", "log_format": "json",
                       "listen": "127.0.0.1:1"}, f)
        d = L.Lokrd(BASE, tmp, extra=["--config", cfg], contract=contract, results=res)
        ck(d.get("/readyz").status == 200, "config + command line: command line wins")
        ck('"msg":"listening on' in d.logtext(), "config log_format json used")
        ck(d.stop() == 0, "config daemon exit 0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def eviction(res, contract):
    """--cache-bytes small: least recently used adapters are evicted, a pinned
    one stays, evicted ones reload on demand."""
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-evict-")
    try:
        for a in ADAPTERS:
            shutil.copy(os.path.join(F, "adapters", a + ".safetensors"), tmp)
        d = L.Lokrd(BASE, tmp, extra=["--cache-bytes", "48K"], contract=contract, results=res)
        x = np.ones((1, 64), np.float32)
        ck(d.post("/v1/adapters/lokr_dora/load", {"pin": True}).status == 200, "pin lokr_dora")
        for a in ADAPTERS:
            ck(apply(d, "mid.proj", [{"id": a}], x).status == 200, "apply %s under a small cache" % a)
        lst = {a["id"]: a for a in d.get("/v1/adapters").json()["adapters"]}
        resident = [a for a in lst if lst[a]["resident"]]
        ck(lst["lokr_dora"]["resident"], "pinned adapter stays resident")
        ck(len(resident) < len(ADAPTERS), "some adapters were evicted (%s)" % resident)
        t = d.get("/metrics").body.decode()
        ev = int(re.search(r"^lokrd_adapter_evictions_total (\d+)", t, re.M).group(1))
        rb = int(re.search(r"^lokrd_adapter_resident_bytes (\d+)", t, re.M).group(1))
        ck(ev > 0, "evictions counted (%d)" % ev)
        ck(rb <= 48 * 1024 or len(resident) == 1, "resident bytes %d within the budget" % rb)
        ck(apply(d, "mid.proj", [{"id": ADAPTERS[0]}], x).status == 200, "evicted adapter reloads")
        ck(d.stop() == 0, "eviction daemon exit 0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def disk_full(res, contract):
    """507 on a full disk (a 64 KiB tmpfs; needs root to mount), the previous
    adapter intact and nothing partial left."""
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-full-")
    mnt = os.path.join(tmp, "small")
    os.mkdir(mnt)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                           mnt], capture_output=True).returncode != 0:
        print("  note: 507 (disk full) not checked: cannot mount a small tmpfs here")
        shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        d = L.Lokrd(BASE, mnt, contract=contract, results=res)
        src = open(os.path.join(F, "adapters", "loha.safetensors"), "rb").read()
        r = d.request("PUT", "/v1/adapters/first", body=src)
        ck(r.status == 201, "PUT fits: 201 (%d)" % r.status)
        r = d.request("PUT", "/v1/adapters/first", body=src)
        ck(r.status == 507 and r.code == "insufficient_storage",
           "replacing on a full disk: 507 (%d %s)" % (r.status, r.body[:120]))
        ck(sorted(os.listdir(mnt)) == ["first.safetensors"], "nothing partial left: %s" %
           os.listdir(mnt))
        with open(os.path.join(mnt, "first.safetensors"), "rb") as f:
            ck(f.read() == src, "previous adapter intact")
        ck(d.get("/v1/adapters/first").status == 200, "previous adapter still served")
        ck(d.stop() == 0, "disk-full daemon exit 0")
    finally:
        subprocess.run(["umount", mnt], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def merged_weight(d, adapters, layer):
    r = d.post("/v1/merge", {"adapters": adapters, "layers": [layer]})
    assert r.status == 200, r.body
    return L.st_read(r.body)[0][layer + ".weight"]


def apply(d, layer, adapters, x, form="data", dtype="f32", **kw):
    req = {"layer": layer, "adapters": adapters, "input": L.tensor_json(x, form, dtype)}
    req.update(kw)
    return d.post("/v1/apply", req)


def run(d, res, ck, adir, base, rng, tmp):
    # --- small routes -------------------------------------------------------
    r = d.get("/healthz")
    ck(r.status == 200 and r.json()["status"] == "ok", "healthz")
    r = d.get("/readyz")
    ck(r.status == 200, "readyz")
    ck((r.header("X-Lokrd-Instance") or "").endswith(":%d" % d.port), "X-Lokrd-Instance")
    r = d.get("/v1/model")
    m = r.json()
    ck(r.status == 200 and m["count"] == 8, "model: 8 layers")
    shapes = {l["name"]: l["shape"] for l in m["layers"]}
    ck(shapes.get("down.resnet.conv1") == [48, 32, 3, 3], "model: conv shape")
    ck(all(shapes[k[:-7]] == list(v.shape) for k, v in base.items() if k.endswith(".weight")),
       "model: every base layer with its shape")
    ck(m["shm"]["sealed"] and m["shm"]["name"], "model: shm segment named and sealed")
    r = d.get("/v1/adapters")
    ids = [a["id"] for a in r.json()["adapters"]]
    ck(ids == sorted(ADAPTERS), "list: %s" % ids)
    algos = {a["id"]: a["algos"] for a in r.json()["adapters"]}
    ck(algos.get("loha") == ["loha"] and algos.get("lora") == ["lora"], "list: algos")
    ck(any(a["dora"] for a in r.json()["adapters"] if a["id"] == "lokr_dora"), "list: dora")
    r = d.get("/v1/adapters/lokr_dora")
    det = r.json()
    ck(r.status == 200 and det["resident"] and det["layer_count"] == 6, "detail: lokr_dora")
    ck(all(l["dora"] == "out" for l in det["layers"]), "detail: DoRA axis out")
    lk = [l for l in det["layers"] if l["layer"] == "down.attn.to_k"]
    ck(lk and lk[0]["kron"]["w1"] == [10, 12] and lk[0]["rank"] == 4 and
       abs(lk[0]["scale"] - 0.5) < 1e-7, "detail: factor shapes, rank, scale")
    ck(det["params"] < det["full_params"], "detail: parameters vs full delta")
    r = d.get("/metrics")
    ck(r.status == 200 and b"lokrd_http_requests_total" in r.body and
       b"lokrd_adapter_loads_total" in r.body, "metrics text")
    r = d.request("HEAD", "/healthz")
    ck(r.status == 200 and r.body == b"", "HEAD /healthz")

    # --- apply: linear, all forms and dtypes --------------------------------
    layer = "mid.proj"
    w0 = base[layer + ".weight"]
    b0 = base[layer + ".bias"]
    x = rng.standard_normal((3, 64)).astype(np.float32)
    r = apply(d, layer, [], x)
    ck(r.status == 200 and L.rel(L.tensor_from_json(r.json()["output"]),
                                 x @ w0.T + b0) < 1e-5, "apply: empty set = base")
    r = d.post("/v1/apply", {"layer": layer, "input": L.tensor_json(x)})
    ck(r.status == 200, "apply: adapters omitted")
    ad = [{"id": "lokr_balanced", "multiplier": 0.7}]
    wm = merged_weight(d, ad, layer)
    want = x.astype(np.float64) @ wm.T.astype(np.float64) + b0
    for form in ("data", "b64"):
        for dt, tol in (("f32", 5e-6), ("f16", 2e-3), ("bf16", 1.6e-2)):
            xi = x if dt == "f32" else (x.astype(np.float16).astype(np.float32) if dt == "f16"
                                        else L.bf16_round(x))
            r = apply(d, layer, ad, x, form, dt)
            if not ck(r.status == 200, "apply %s/%s: %d %s" % (form, dt, r.status, r.body[:200])):
                continue
            out = r.json()["output"]
            ck(out["dtype"] == dt and (("b64" in out) == (form == "b64")) and
               out["shape"] == [3, 96], "apply %s/%s: response form, dtype, shape" % (form, dt))
            wi = xi.astype(np.float64) @ wm.T.astype(np.float64) + b0
            e = L.rel(L.tensor_from_json(out), wi)
            ck(e < tol, "apply %s/%s rel %.3g" % (form, dt, e))
    # two adapters: deltas add (non-DoRA)
    xs = rng.standard_normal((2, 64)).astype(np.float32)
    y0 = L.tensor_from_json(apply(d, layer, [], xs).json()["output"])
    ya = L.tensor_from_json(apply(d, layer, [{"id": "lokr_balanced"}], xs).json()["output"])
    yb = L.tensor_from_json(apply(d, layer, [{"id": "lora", "multiplier": -0.5}], xs)
                            .json()["output"])
    yab = L.tensor_from_json(apply(d, layer, [{"id": "lora", "multiplier": -0.5},
                                              {"id": "lokr_balanced"}], xs).json()["output"])
    ck(L.rel(yab - y0, (ya - y0) + (yb - y0)) < 1e-4, "apply: two adapters add")
    # a large body (parsed on the pool, not on the loop)
    xl = rng.standard_normal((2500, 64)).astype(np.float32)
    r = apply(d, layer, ad, xl)
    ck(r.status == 200 and L.rel(L.tensor_from_json(r.json()["output"]),
                                 xl.astype(np.float64) @ wm.T.astype(np.float64) + b0) < 1e-5,
       "apply: 1.6 MB JSON body")
    big_bad = {"layer": layer, "input": L.tensor_json(xl), "extra": 1}
    r = d.post("/v1/apply", big_bad)
    ck(r.status == 400 and r.code == "bad_request", "large body with an unknown field: 400")
    r = d.post("/v1/apply", {"layer": "nope", "input": L.tensor_json(xl)})
    ck(r.status == 404 and r.code == "layer_not_found", "large body, unknown layer: 404")
    # no batch axis: (in) -> (out), (in, H, W) -> (out, Ho, Wo); dtype aliases
    r = d.post("/v1/apply", {"layer": layer, "adapters": ad,
                             "input": {"dtype": "float32", "shape": [64],
                                       "data": [float(v) for v in x[0]]}})
    ck(r.status == 200 and r.json()["output"]["shape"] == [96] and
       L.rel(L.tensor_from_json(r.json()["output"]), x[0].astype(np.float64) @ wm.T + b0) < 1e-5,
       "apply: 1-D input (%d)" % r.status)
    # zero rows
    r = d.post("/v1/apply", {"layer": layer, "adapters": ad,
                             "input": {"dtype": "f32", "shape": [0, 64], "data": []}})
    ck(r.status == 200 and r.json()["output"]["shape"] == [0, 96], "apply: zero rows")

    # --- apply: conv2d with stride/padding/dilation --------------------------
    cl = "down.resnet.conv1"
    cad = [{"id": "lokr_dora", "multiplier": 1.0}]
    wc = merged_weight(d, cad, cl)
    xc = rng.standard_normal((2, 32, 7, 6)).astype(np.float32)
    for kw in ({}, {"stride": 2}, {"padding": 1}, {"stride": [2, 1], "padding": [1, 2],
                                                   "dilation": [1, 2]}, {"dilation": 2}):
        st = kw.get("stride", 1)
        pd = kw.get("padding", 0)
        dl = kw.get("dilation", 1)
        pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)  # noqa: E731
        want = L.conv2d_ref(xc, wc, base[cl + ".bias"], pair(st), pair(pd), pair(dl))
        r = apply(d, cl, cad, xc, "b64", **kw)
        if not ck(r.status == 200, "conv %s: %d %s" % (kw, r.status, r.body[:200])):
            continue
        got = L.tensor_from_json(r.json()["output"])
        ck(got.shape == want.shape and L.rel(got, want) < 2e-5,
           "conv %s: rel %.3g shape %s" % (kw, L.rel(got, want), got.shape))
    r = apply(d, cl, cad, xc[0], "b64", padding=1)
    want = L.conv2d_ref(xc[:1], wc, base[cl + ".bias"], (1, 1), (1, 1))[0]
    ck(r.status == 200 and r.json()["output"]["shape"] == list(want.shape) and
       L.rel(L.tensor_from_json(r.json()["output"]), want) < 2e-5, "conv: 3-D input")
    r = apply(d, "up.shortcut", [{"id": "loha"}], rng.standard_normal((1, 32, 3, 3)))
    ck(r.status == 200 and r.json()["output"]["shape"] == [1, 64, 3, 3], "conv 1x1")

    # --- merge: dtypes, delta, layers ----------------------------------------
    r = d.post("/v1/merge", {"adapters": [{"id": "lora"}]})
    got, meta = L.st_read(r.body)
    ck(r.status == 200 and r.header("Content-Type") == "application/octet-stream",
       "merge: octet-stream")
    ck(int(r.header("Content-Length")) == len(r.body), "merge: Content-Length")
    ck(len(got) == 7, "merge: default = layers the set touches (%d)" % len(got))
    for dt in ("f16", "bf16"):
        r = d.post("/v1/merge", {"adapters": [{"id": "lora"}], "dtype": dt})
        g2, _ = L.st_read(r.body)
        hdr = json.loads(r.body[8:8 + int.from_bytes(r.body[:8], "little")])
        ck(all(v["dtype"] == dt.upper() for k, v in hdr.items() if k != "__metadata__"),
           "merge %s: dtype in header" % dt)
        ck(all(L.rel(g2[k], got[k]) < (1e-3 if dt == "f16" else 8e-3) for k in got),
           "merge %s: values" % dt)
    r = d.post("/v1/merge", {"adapters": [{"id": "lora"}], "output": "delta"})
    gd, _ = L.st_read(r.body)
    ck(all(L.rel(gd[k], got[k] - base[k]) < 1e-4 for k in got), "merge: delta = merged - base")
    r = d.post("/v1/merge", {"adapters": [], "layers": ["mid.odd", "up.prime.weight"]})
    gb, _ = L.st_read(r.body)
    ck(sorted(gb) == ["mid.odd.weight", "up.prime.weight"] and
       all(np.array_equal(gb[k], base[k]) for k in gb), "merge: empty set, named layers = base")
    r = d.post("/v1/merge", {"adapters": []})
    ck(r.status == 200 and L.st_read(r.body)[0] == {}, "merge: empty set, no layers")

    # --- PUT / DELETE / load / pin -------------------------------------------
    src = open(os.path.join(F, "adapters", "lokr_factor8.safetensors"), "rb").read()
    hdr = {"Content-Type": "application/octet-stream"}
    r = d.request("PUT", "/v1/adapters/mine-1.v2", body=src, headers=hdr)
    ck(r.status == 201 and r.json()["id"] == "mine-1.v2" and r.json()["resident"],
       "PUT new: 201 (%d)" % r.status)
    ck(os.path.exists(os.path.join(adir, "mine-1.v2.safetensors")), "PUT: file in place")
    r = d.request("PUT", "/v1/adapters/mine-1.v2", body=src)
    ck(r.status == 200, "PUT replace: 200 (%d)" % r.status)
    r = apply(d, "mid.proj", [{"id": "mine-1.v2"}], x)
    ck(r.status == 200, "apply with the uploaded adapter")
    r = d.post("/v1/adapters/mine-1.v2/load", {"pin": True})
    ck(r.status == 200 and r.json()["pinned"] is True, "load + pin")
    lst = {a["id"]: a for a in d.get("/v1/adapters").json()["adapters"]}
    ck(lst["mine-1.v2"]["pinned"] and lst["mine-1.v2"]["resident"], "list shows pinned")
    r = d.post("/v1/adapters/mine-1.v2/load", {"pin": False})
    ck(r.status == 200 and r.json()["pinned"] is False, "unpin")
    r = d.request("POST", "/v1/adapters/lora/load")
    ck(r.status == 200 and r.json()["resident"], "load without a body")
    r = d.request("DELETE", "/v1/adapters/mine-1.v2")
    ck(r.status == 204 and r.body == b"", "DELETE: 204")
    ck(not os.path.exists(os.path.join(adir, "mine-1.v2.safetensors")), "DELETE: file gone")
    r = d.get("/v1/adapters/mine-1.v2")
    ck(r.status == 404 and r.code == "adapter_not_found", "GET after DELETE: 404")
    r = d.request("DELETE", "/v1/adapters/mine-1.v2")
    ck(r.status == 404, "DELETE again: 404")
    r = apply(d, "mid.proj", [{"id": "mine-1.v2"}], x)
    ck(r.status == 404 and r.code == "adapter_not_found", "apply with a deleted adapter: 404")

    # PUT of invalid content: 422, nothing left behind
    before = sorted(os.listdir(adir))
    for body, why in ((b"garbage", "not safetensors"), (b"", "empty"),
                      (L.st_write(None, {}), "no modules"),
                      (L.st_write(None, {"lycoris_nope.lokr_w1": np.ones((2, 2), np.float32),
                                         "lycoris_nope.lokr_w2": np.ones((2, 2), np.float32)}),
                       "module fits no layer"),
                      (L.st_write(None, {"lycoris_mid_proj.lokr_w1": np.ones((3, 3), np.float32),
                                         "lycoris_mid_proj.lokr_w2": np.ones((5, 5), np.float32)}),
                       "shapes do not multiply out")):
        r = d.request("PUT", "/v1/adapters/bad", body=body, headers=hdr)
        ck(r.status == 422 and r.code == "adapter_invalid", "PUT %s: 422 (%d %s)" % (
            why, r.status, r.body[:160]))
    r = d.request("PUT", "/v1/adapters/bad", body=L.st_write(None, {
        "lycoris_mid_proj.lokr_w1": np.ones((3, 3), np.float32),
        "lycoris_mid_proj.lokr_w2": np.ones((5, 5), np.float32)}))
    ck(b"lycoris_mid_proj" in r.body, "422 message names the module: %s" % r.body[:200])
    ck(sorted(os.listdir(adir)) == before, "nothing left behind by failed PUTs: %s" % (
        sorted(set(os.listdir(adir)) - set(before))))
    ck(d.get("/v1/adapters/bad").status == 404, "failed PUT is not visible")

    # a broken file in the directory: 422 every time, until it changes
    with open(os.path.join(adir, "broken.safetensors"), "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}        ")
    r1 = d.get("/v1/adapters/broken")
    r2 = apply(d, "mid.proj", [{"id": "broken"}], x)
    ck(r1.status == 422 and r2.status == 422 and r1.code == "adapter_invalid",
       "broken file: 422 (%d, %d)" % (r1.status, r2.status))
    ck(r1.json()["error"]["message"] in r2.json()["error"]["message"],
       "broken file: the same reason every time")
    lst = {a["id"]: a for a in d.get("/v1/adapters").json()["adapters"]}
    ck("error" in lst.get("broken", {}), "list: broken file carries its error")
    time.sleep(0.01)
    shutil.copy(os.path.join(F, "adapters", "lora.safetensors"),
                os.path.join(adir, "broken.safetensors"))
    r = d.get("/v1/adapters/broken")
    ck(r.status == 200, "broken file replaced on disk: 200 (%d)" % r.status)
    os.unlink(os.path.join(adir, "broken.safetensors"))

    # --- error statuses -----------------------------------------------------
    def err(resp, status, code, what):
        ck(resp.status == status and (code is None or resp.code == code),
           "%s: want %d %s, got %d %s" % (what, status, code, resp.status, resp.body[:160]))

    J = {"Content-Type": "application/json"}
    err(d.request("POST", "/v1/apply", body=b"{not json", headers=J), 400, "bad_json", "bad JSON")
    err(d.request("POST", "/v1/apply", body=b'{"layer":"a","layer":"b"}', headers=J), 400,
        "bad_json", "duplicate keys")
    err(d.request("POST", "/v1/apply", body=b"[1,2]", headers=J), 400, "bad_json", "not an object")
    err(d.request("POST", "/v1/apply", body=b"", headers=J), 400, "bad_json", "empty body")
    err(d.post("/v1/apply", {"layer": layer, "input": L.tensor_json(x), "bogus": 1}), 400,
        "bad_request", "unknown field")
    err(d.post("/v1/apply", {"input": L.tensor_json(x)}), 400, "bad_request", "missing layer")
    err(d.post("/v1/apply", {"layer": layer}), 400, "bad_request", "missing input")
    err(d.post("/v1/apply", {"layer": "no.such", "input": L.tensor_json(x)}), 404,
        "layer_not_found", "unknown layer")
    err(apply(d, layer, [{"id": "nobody"}], x), 404, "adapter_not_found", "unknown adapter")
    err(apply(d, layer, [{"id": "../etc/passwd"}], x), 400, "bad_request", "id with ../")
    err(apply(d, layer, [{"id": "lora", "multiplier": "x"}], x), 400, "bad_request",
        "multiplier not a number")
    err(apply(d, layer, [{"id": "lora", "strength": 1}], x), 400, "bad_request",
        "unknown set field")
    err(apply(d, layer, [], rng.standard_normal((2, 63))), 400, "bad_input_shape",
        "wrong input width")
    err(apply(d, layer, [], rng.standard_normal((2, 2, 64))), 400, "bad_input_shape",
        "wrong input rank")
    err(d.post("/v1/apply", {"layer": layer, "input": {"dtype": "f32", "shape": [1, 64],
                                                         "data": [1.0] * 63}}), 400, "bad_input",
        "data length")
    err(d.post("/v1/apply", {"layer": layer, "input": {"dtype": "f64", "shape": [1, 64],
                                                         "data": [1.0] * 64}}), 400, "bad_input",
        "unsupported dtype")
    err(d.post("/v1/apply", {"layer": layer, "input": {"dtype": "f32", "shape": [1, 64],
                                                         "b64": "!!!!"}}), 400, "bad_input",
        "bad base64")
    inf = np.full((1, 64), np.inf, np.float32)
    err(d.post("/v1/apply", {"layer": layer, "input": L.tensor_json(inf, "b64")}), 400,
        "bad_input", "non-finite b64 input")
    err(d.request("POST", "/v1/apply", headers=J,
                  body=('{"layer":"%s","input":{"dtype":"f32","shape":[1,64],"data":[%s]}}' % (
                      layer, ",".join(["NaN"] * 64))).encode()), 400, "bad_json", "NaN token")
    err(d.post("/v1/apply", {"layer": layer, "input": L.tensor_json(x), "stride": 2}), 400,
        "bad_request", "stride on a linear layer")
    err(apply(d, cl, [], xc, stride=0), 400, "bad_request", "stride 0")
    err(apply(d, cl, [], xc, padding=[1]), 400, "bad_request", "padding of one element")
    err(apply(d, cl, [], rng.standard_normal((1, 32, 1, 1)), dilation=3), 400,
        "bad_input_shape", "input smaller than the kernel")
    err(d.post("/v1/merge", {"adapters": [], "layers": ["nope"]}), 404, "layer_not_found",
        "merge unknown layer")
    err(d.post("/v1/merge", {"adapters": [], "dtype": "f8"}), 400, "bad_request", "merge dtype")
    err(d.post("/v1/merge", {"adapters": [], "output": "both"}), 400, "bad_request",
        "merge output")
    err(d.post("/v1/merge", {"adapters": [{"id": "ghost"}]}), 404, "adapter_not_found",
        "merge unknown adapter")
    err(d.post("/v1/adapters/lora/load", {"pin": "yes"}), 400, "bad_request", "pin type")
    err(d.post("/v1/adapters/ghost/load", {}), 404, "adapter_not_found", "load unknown")
    err(d.get("/v1/adapters/.hidden"), 400, "bad_adapter_id", "id starting with a dot")
    err(d.get("/v1/adapters/%2e%2e"), 400, "bad_adapter_id", "%2e%2e")
    err(d.get("/v1/adapters/a%00b"), 400, "bad_adapter_id", "NUL in id")
    err(d.get("/v1/adapters/" + "a" * 129), 400, "bad_adapter_id", "overlong id")
    err(d.request("PUT", "/v1/adapters/x..y%2F..", body=src), 404, "not_found", "slash in id")
    err(d.get("/v1/nothing"), 404, "not_found", "unknown route")
    r = d.request("DELETE", "/v1/apply")
    err(r, 405, "method_not_allowed", "DELETE /v1/apply")
    ck(r.header("Allow") == "POST", "405 carries Allow")
    err(d.request("POST", "/v1/adapters/lora"), 405, "method_not_allowed", "POST adapter")
    err(d.request("POST", "/v1/apply", body=b"{}", headers={"Content-Type": "text/plain"}),
        415, "unsupported_media_type", "text/plain JSON")
    err(d.request("PUT", "/v1/adapters/t1", body=src, headers={"Content-Type": "text/plain"}),
        415, "unsupported_media_type", "PUT text/plain")
    # 413: a declared length over the limit is refused before the body is read
    st, head, body = raw_request(d.port, b"POST /v1/apply HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"Content-Length: 999999999999\r\n\r\n{")
    ck(st == 413 and b"body_too_large" in body, "413 body too large (%d)" % st)
    ck(d.contract.validate("POST", "/v1/apply", st, "application/json", body) is None,
       "413 matches the contract")
    st, head, body = raw_request(d.port, b"PUT /v1/adapters/big HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 99999999999999\r\n\r\nxx")
    ck(st == 413, "PUT 413 (%d)" % st)
    ck(not [f for f in os.listdir(adir) if f.startswith(".")], "no temp file after 413")
    # 409: a second writer while a PUT is uploading; then the first completes
    s1 = raw_request(d.port, b"PUT /v1/adapters/slow HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(src) + src[:100], read=False)
    time.sleep(0.3)
    err(d.request("PUT", "/v1/adapters/slow", body=src), 409, "conflict", "concurrent PUT")
    err(d.request("DELETE", "/v1/adapters/slow"), 409, "conflict", "DELETE during PUT")
    ck(d.get("/healthz").status == 200, "healthz while a PUT uploads")
    s1.sendall(src[100:])
    st, _, body = L.read_response(s1)
    ck(st == 201, "slow PUT completes: %d %s" % (st, body[:100]))
    ck(d.request("DELETE", "/v1/adapters/slow").status == 204, "delete slow")

    # --- single-flight: concurrent first requests load once ------------------
    for i in range(3):
        shutil.copy(os.path.join(F, "adapters", "lokr_dora.safetensors"),
                    os.path.join(adir, "cold%d.safetensors" % i))

    def loads():
        t = d.get("/metrics").body.decode()
        return int(re.search(r"^lokrd_adapter_loads_total (\d+)", t, re.M).group(1))

    n0 = loads()
    xq = rng.standard_normal((2, 64)).astype(np.float32)
    with cf.ThreadPoolExecutor(16) as ex:
        futs = [ex.submit(apply, d, layer, [{"id": "cold%d" % (i % 3)}], xq) for i in range(24)]
        outs = [f.result() for f in futs]
    ck(all(o.status == 200 for o in outs), "cold concurrent requests: all 200")
    ck(loads() - n0 == 3, "single-flight: 3 adapters loaded once each (%d loads)" % (loads() - n0))

    # --- concurrency: different adapters at once == one by one ---------------
    jobs = []
    for i in range(48):
        a = ADAPTERS[i % len(ADAPTERS)]
        lay = ["mid.proj", "down.attn.to_q", "up.prime", "mid.odd"][i % 4]
        w = base[lay + ".weight"]
        xi = rng.standard_normal((1 + i % 3, w.shape[1])).astype(np.float32)
        jobs.append((lay, [{"id": a, "multiplier": 0.25 * (1 + i % 4)}], xi))
    single = [L.tensor_from_json(apply(d, *j, form="b64").json()["output"]) for j in jobs]
    with cf.ThreadPoolExecutor(24) as ex:
        conc = list(ex.map(lambda j: apply(d, *j, form="b64"), jobs))
    ok = all(c.status == 200 for c in conc)
    ck(ok, "concurrent: all 200")
    if ok:
        worst = max(L.rel(L.tensor_from_json(c.json()["output"]), s)
                    for c, s in zip(conc, single))
        ck(worst < 1e-5, "concurrent == one by one (worst rel %.3g)" % worst)
    m = re.search(r'^lokrd_batch_size_count (\d+)', d.get("/metrics").body.decode(), re.M)
    ck(m is not None, "metrics: batch size histogram")

    # --- a bad request beside good ones ---------------------------------------
    bad = [
        lambda: d.request("POST", "/v1/apply", body=b'{"layer": ', headers=J),
        lambda: d.post("/v1/apply", {"layer": layer, "input": L.tensor_json(inf, "b64")}),
        lambda: apply(d, layer, [{"id": "ghost"}], x),
        lambda: apply(d, layer, [], rng.standard_normal((2, 65))),
        lambda: d.request("PUT", "/v1/adapters/junk", body=b"junk" * 1000),
    ]
    with cf.ThreadPoolExecutor(16) as ex:
        good_f = [ex.submit(apply, d, *j, form="b64") for j in jobs[:24]]
        bad_f = [ex.submit(bad[i % len(bad)]) for i in range(15)]
        good = [f.result() for f in good_f]
        bads = [f.result() for f in bad_f]
    ck(all(b.status in (400, 404, 409, 422) for b in bads), "bad requests: 4xx (%s)" % sorted(
        set(b.status for b in bads)))
    ck(all(g.status == 200 and L.rel(L.tensor_from_json(g.json()["output"]), s) < 1e-5
           for g, s in zip(good, single[:24])), "good requests beside bad ones: unharmed")
    ck(d.get("/healthz").status == 200, "healthz after the storm")

    # --- eviction under the cache budget keeps serving ------------------------
    lst = d.get("/v1/adapters").json()["adapters"]
    ck(all(a["resident"] for a in lst if a["id"] in ("lora", "loha")), "resident flags")

    # --- 503 and graceful drain ----------------------------------------------
    # A PUT still uploading keeps the daemon draining after SIGTERM; meanwhile
    # /readyz on a kept-alive connection answers 503 with Retry-After, and the
    # PUT, already received in part, completes with 201.
    keep = d.connect()
    ck(d.get("/readyz", conn=keep).status == 200, "readyz before SIGTERM")
    s1 = raw_request(d.port, b"PUT /v1/adapters/late HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(src) + src[:64], read=False)
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    r = d.get("/readyz", conn=keep)
    ck(r.status == 503 and r.code == "shutting_down" and r.header("Retry-After"),
       "readyz during drain: 503 + Retry-After (%d)" % r.status)
    keep.close()
    refused = False
    try:
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
    except OSError:
        refused = True
    ck(refused, "no new connections while draining")
    s1.sendall(src[64:])
    st, _, body = L.read_response(s1)
    ck(st == 201, "request received before SIGTERM completes: %d" % st)
    try:
        rc = d.proc.wait(30)
    except Exception:
        rc = None
    ck(rc == 0, "exit 0 after drain (%s)" % rc)
    ck("drained" in d.logtext(), "log says drained")


if __name__ == "__main__":
    sys.exit(main())
