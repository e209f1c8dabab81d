"""load.py - end-to-end speed of lokrd under load (issue 8), run by bench/load.

Everything goes through HTTP on 127.0.0.1 with wrk (Lua scripts for POST
bodies) or curl, against the daemon of the build directory, and every
ratio is formed inside this run against a reference measured in the same
run (nginx with one worker serving a static file, STREAM copy, OpenBLAS
sgemm, the library's own apply and base attach: refs.c), interleaved in
rounds where the two sides can alternate; the value is the median of the
per-round ratios.

All data is synthetic (gen.py) under one temp dir in /tmp; every process
started here is in its own session and is killed (by process group) at
exit, also on SIGINT/SIGTERM.
"""
import argparse
import base64
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import gen  # noqa: E402

PROCS = []
TMP = None


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------ processes

def start(cmd, logpath, env=None):
    f = open(logpath, "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=env)
    f.close()
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=10):
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def cleanup():
    for p in list(PROCS):
        stop(p, timeout=5)
    if TMP and os.path.isdir(TMP) and not os.environ.get("LOKR_LOAD_KEEP"):
        shutil.rmtree(TMP, ignore_errors=True)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(port, path, timeout=60, proc=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the server on port %d exited with %s" % (port, proc.returncode))
        try:
            st, _ = get(port, path)
            if st == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("port %d %s not ready after %ds" % (port, path, timeout))


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def post(port, path, obj):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", path, body=json.dumps(obj), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


class Daemon:
    def __init__(self, name, adapters, cache=None, threads=2, workers=1):
        self.name = name
        self.log = os.path.join(TMP, name + ".log")
        cmd = [A.lokrd, "--base", BASE, "--adapters", adapters, "--listen", "127.0.0.1:0",
               "--threads", str(threads), "--workers", str(workers)]
        if cache:
            cmd += ["--cache-bytes", str(int(cache))]
        self.p = start(cmd, self.log)
        self.port = None
        t0 = time.time()
        while self.port is None:
            if self.p.poll() is not None:
                raise RuntimeError("lokrd %s exited: %s" % (name, open(self.log).read()[-2000:]))
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(self.log).read())
            if m:
                self.port = int(m.group(1))
            elif time.time() - t0 > 30:
                raise RuntimeError("lokrd %s did not listen" % name)
            else:
                time.sleep(0.01)
        wait_http(self.port, "/readyz", 60, self.p)

    def metrics(self):
        st, body = get(self.port, "/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out

    def load(self, aid):
        st, body = post(self.port, "/v1/adapters/%s/load" % aid, {})
        if st != 200:
            raise RuntimeError("load %s: %d %s" % (aid, st, body[:300]))
        return json.loads(body)

    def stop(self):
        stop(self.p)


class Nginx:
    def __init__(self, root):
        self.prefix = os.path.join(TMP, "nginx")
        os.makedirs(self.prefix, exist_ok=True)
        self.port = free_port()
        conf = open(os.path.join(HERE, "nginx.conf.in")).read()
        conf = conf.replace("@PREFIX@", self.prefix).replace("@PORT@", str(self.port))
        conf = conf.replace("@ROOT@", root)
        cpath = os.path.join(self.prefix, "nginx.conf")
        open(cpath, "w").write(conf)
        self.p = start(["nginx", "-p", self.prefix, "-c", cpath, "-e",
                        os.path.join(self.prefix, "error.log")],
                       os.path.join(self.prefix, "stdout.log"))
        wait_http(self.port, "/healthz", 20, self.p)

    def stop(self):
        stop(self.p)


# ------------------------------------------------------------------ tools

SCRIPTS = {}


def script(name):
    if name not in SCRIPTS:
        path = os.path.join(TMP, "wrk-" + name)
        with open(path, "w") as f:
            f.write(open(os.path.join(HERE, name)).read())
            f.write("\n")
            f.write(open(os.path.join(HERE, "report.lua")).read())
        SCRIPTS[name] = path
    return SCRIPTS[name]


def wrk(port, path, conns, threads, dur, lua="get.lua", args=()):
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", "%gs" % dur, "--timeout", "20s",
           "-s", script(lua), "http://127.0.0.1:%d%s" % (port, path)]
    if args:
        cmd += ["--"] + [str(a) for a in args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=dur + 120).stdout
    m = re.search(r"LOADJSON (\{.*\})", out)
    if not m:
        raise RuntimeError("wrk gave no report:\n" + out)
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    if r["errors"] or r["status_errors"]:
        log("   (wrk %s: %d socket errors, %d non-2xx of %d)" % (
            path, r["errors"], r["status_errors"], r["requests"]))
    return r


def curl_post(port, path, obj):
    """(seconds, bytes) of a POST read to the end, timed by curl."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
         "-H", "Content-Type: application/json", "--data-binary", json.dumps(obj),
         "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True, check=True)
    code, size, t = out.stdout.split()
    if code != "200":
        raise RuntimeError("POST %s: HTTP %s" % (path, code))
    return float(t), int(size)


def curl_get(port, path):
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
         "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True, check=True)
    code, size, t = out.stdout.split()
    if code != "200":
        raise RuntimeError("GET %s: HTTP %s" % (path, code))
    return float(t), int(size)


def refs(*args):
    out = subprocess.run([REFS] + [str(a) for a in args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError("refs %s: %s" % (" ".join(map(str, args)), out.stderr))
    return float(out.stdout.split()[1])


def b64_rows(rows, width, seed):
    vals = [((i * 37 + seed * 11) % 101) / 101.0 - 0.5 for i in range(rows * width)]
    return base64.b64encode(struct.pack("<%df" % len(vals), *vals)).decode()


def apply_body(layer, aid, rows, width, seed=0, form="b64"):
    inp = {"dtype": "f32", "shape": [rows, width]}
    if form == "b64":
        inp["b64"] = b64_rows(rows, width, seed)
    else:
        inp["data"] = [round(((i * 37 + seed * 11) % 101) / 101.0 - 0.5, 6)
                       for i in range(rows * width)]
    body = {"layer": layer, "input": inp}
    body["adapters"] = [{"id": aid}] if aid else []
    return body


def bodies_file(name, bodies):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        for b in bodies:
            f.write(json.dumps(b, separators=(",", ":")) + "\n")
    return path


def hist_delta(m0, m1, name):
    """Buckets (le, count in bucket) of a histogram between two scrapes."""
    out = []
    prev = 0.0
    keys = [k for k in m1 if k.startswith(name + "_bucket{")]

    def le(k):
        v = re.search(r'le="([^"]+)"', k).group(1)
        return float("inf") if v == "+Inf" else float(v)
    for k in sorted(keys, key=le):
        cum = m1[k] - m0.get(k, 0.0)
        out.append((le(k), cum - prev))
        prev = cum
    n = m1.get(name + "_count", 0) - m0.get(name + "_count", 0)
    s = m1.get(name + "_sum", 0) - m0.get(name + "_sum", 0)
    return out, n, s


def med(v):
    return statistics.median(v)


RESULTS = []   # headline rows for results-load.json
EXTRA = []     # further ratios printed beside their goals
DETAIL = {}    # raw figures for the README


def result(name, value, goal, better, what, headline=True):
    met = value <= goal if better == "lower" else value >= goal
    row = {"name": name, "value": round(value, 4), "goal": goal, "better": better,
           "met": bool(met)}
    (RESULTS if headline else EXTRA).append(dict(row, what=what))
    log("   => %-30s %9.4f  goal %s %-6g %s   %s" % (
        name, value, "<=" if better == "lower" else ">=", goal, "met" if met else "MISSED", what))


# ------------------------------------------------------------------ benchmarks

def bench_http(ng, d):
    log("== HTTP overhead: GET /healthz vs nginx static, wrk -t2 -c64 ==")
    ratios, ng_rps, ld_rps = [], [], []
    for r in range(ROUNDS):
        a = wrk(ng.port, "/healthz", 64, 2, DUR)
        b = wrk(d.port, "/healthz", 64, 2, DUR)
        ng_rps.append(a["rps"])
        ld_rps.append(b["rps"])
        ratios.append(b["rps"] / a["rps"])
        log("   round %d: nginx %.0f req/s, lokrd %.0f req/s, ratio %.3f" % (
            r + 1, a["rps"], b["rps"], ratios[-1]))
    DETAIL["healthz"] = {"nginx_rps": ng_rps, "lokrd_rps": ld_rps}
    result("healthz_vs_nginx", med(ratios), 0.5, "higher",
           "GET /healthz req/s / nginx static req/s (median of %d rounds)" % ROUNDS)

    log("== /v1/apply 1 x 320 (LoKr, b64 and JSON numbers), one connection, p50 vs nginx ==")
    compute_us = refs("apply", BASE, os.path.join(ADIR, "t000.safetensors"), "small.l0", 1, 7)
    log("   compute (lokr_exec_linear, 1 x 320, same adapter): %.1f us" % compute_us)
    bb = bodies_file("apply320-b64", [apply_body("small.l0", "t000", 1, 320)])
    bj = bodies_file("apply320-json", [apply_body("small.l0", "t000", 1, 320, form="json")])
    ov_b, ov_j, p_ng, p_b, p_j = [], [], [], [], []
    for r in range(ROUNDS):
        a = wrk(ng.port, "/healthz", 1, 1, DUR)
        b = wrk(d.port, "/v1/apply", 1, 1, DUR, "post.lua", [bb, "/v1/apply"])
        j = wrk(d.port, "/v1/apply", 1, 1, DUR, "post.lua", [bj, "/v1/apply"])
        p_ng.append(a["p50"])
        p_b.append(b["p50"])
        p_j.append(j["p50"])
        ov_b.append((b["p50"] - compute_us) / a["p50"])
        ov_j.append((j["p50"] - compute_us) / a["p50"])
        log("   round %d: nginx p50 %d us; apply p50 b64 %d us, json %d us; overhead/nginx "
            "b64 %.2f, json %.2f" % (r + 1, a["p50"], b["p50"], j["p50"], ov_b[-1], ov_j[-1]))
    DETAIL["apply320"] = {"compute_us": compute_us, "nginx_p50": p_ng, "b64_p50": p_b,
                          "json_p50": p_j}
    result("apply_p50_overhead_vs_nginx", med(ov_b), 2.0, "lower",
           "(p50 of /v1/apply 1x320 b64 - compute) / nginx p50, one connection")
    result("apply_p50_overhead_json_vs_nginx", med(ov_j), 2.0, "lower",
           "the same with the input and output as JSON numbers", headline=False)


def bench_batching(d):
    log("== Batching: wrk -t2 -c64, 1 x 1280 rows on big.l0, 64 distinct adapters ==")
    bodies = [apply_body("big.l0", "t%03d" % i, 1, 1280, seed=i) for i in range(64)]
    bf = bodies_file("batch-b64", bodies)
    wrk(d.port, "/v1/apply", 64, 2, 1, "post.lua", [bf, "/v1/apply", "rotate"])  # warm
    m0 = d.metrics()
    r = wrk(d.port, "/v1/apply", 64, 2, DUR * 1.5, "post.lua", [bf, "/v1/apply", "rotate"])
    m1 = d.metrics()
    hist, n, s = hist_delta(m0, m1, "lokrd_batch_size")
    mean_b = s / n if n else 1.0
    bsz = max(1, int(round(mean_b)))
    sg = refs("sgemm", bsz, 1280, 1280, 5)
    ratio = r["rps"] / (A.threads * sg)
    log("   %.0f rows/s; mean batch %.1f over %d batches; sgemm(%d x 1280 x 1280) %.0f rows/s "
        "per thread x %d threads" % (r["rps"], mean_b, n, bsz, sg, A.threads))
    log("   batch-size histogram (le: batches): " +
        ", ".join("%g: %d" % (le, c) for le, c in hist if c))
    DETAIL["batching"] = {"rps": r["rps"], "mean_batch": mean_b, "batches": n, "hist": hist,
                          "sgemm_rows_per_s": sg, "p50": r["p50"], "p99": r["p99"]}
    result("batching_vs_sgemm", ratio, 0.5, "higher",
           "apply rows/s under load / (threads x sgemm rows/s at the achieved batch)",
           headline=False)


def bench_merge(d, ng):
    log("== Merge: POST /v1/merge (cold0: 16 layers 1280x1280, f32) vs STREAM copy ==")
    d.load("cold0")
    ratios, reps, rates, streams, ngr = [], [], [], [], []
    for r in range(ROUNDS):
        st = refs("stream", 256, A.threads, 3)
        mult = 0.5 + 0.1 * r   # a set not seen before: a merge cache would miss
        m0 = d.metrics()
        t1, n1 = curl_post(d.port, "/v1/merge", {"adapters": [{"id": "cold0",
                                                               "multiplier": mult}]})
        t2, n2 = curl_post(d.port, "/v1/merge", {"adapters": [{"id": "cold0",
                                                               "multiplier": mult}]})
        m1 = d.metrics()
        tn, nn = curl_get(ng.port, "/merge.bin")
        rate = n1 / t1 / 1e9
        rates.append(rate)
        streams.append(st)
        ngr.append(nn / tn / 1e9)
        ratios.append(rate / st)
        reps.append(t2 / t1)
        hits = {k: m1[k] - m0.get(k, 0) for k in m1 if "cache" in k and k.endswith("_total")}
        log("   round %d: merge %.1f MB in %.3f s = %.2f GB/s, repeat %.3f s; STREAM copy "
            "%.2f GB/s; nginx same-size file %.2f GB/s; cache counters %s" % (
                r + 1, n1 / 1e6, t1, rate, t2, st, ngr[-1], hits))
    DETAIL["merge"] = {"gbs": rates, "stream": streams, "nginx_file_gbs": ngr,
                       "repeat_ratio": reps, "bytes": n1}
    result("merge_vs_stream", med(ratios), 0.5, "higher",
           "/v1/merge bytes/s / STREAM copy (%d threads) bytes/s" % A.threads)
    result("merge_repeat_vs_first", med(reps), 0.1, "lower",
           "second identical /v1/merge time / first")
    result("merge_vs_nginx_file", med([a / b for a, b in zip(rates, ngr)]), 0.5, "higher",
           "/v1/merge bytes/s / nginx sendfile of a file of the same size (transport)",
           headline=False)


def bench_cold(d):
    log("== Cold load: POST /v1/adapters/{id}/load of a 26 MB LoKr from page cache ==")
    src = os.path.join(ADIR, "cold0.safetensors")
    size = os.path.getsize(src)
    readg = refs("read", src, 5)
    nids = 4 if Q else 8
    gbs = []
    for i in range(nids):
        aid = "coldx%02d" % i
        m0 = d.metrics()
        t0 = time.time()
        d.load(aid)
        wall = time.time() - t0
        m1 = d.metrics()
        secs = m1["lokrd_adapter_load_seconds_sum"] - m0["lokrd_adapter_load_seconds_sum"]
        gbs.append(size / secs / 1e9)
        log("   %s: %.1f MB, server %.1f ms (%.2f GB/s), HTTP %.1f ms" % (
            aid, size / 1e6, secs * 1e3, gbs[-1], wall * 1e3))
    g = med(gbs)
    DETAIL["cold"] = {"gbs": gbs, "read_gbs": readg, "bytes": size}
    result("cold_load_gbps", g, 1.0, "higher",
           "adapter parse + validate + resident, GB/s of file from page cache")
    result("cold_load_vs_read", readg / g, 2.0, "lower",
           "load time / plain read() time of the same file (read %.1f GB/s)" % readg,
           headline=False)

    log("== Other adapters' p99 while big adapters load (wrk -t1 -c4, 1 x 320) ==")
    bf = bodies_file("tiny320", [apply_body("small.l0", "t%03d" % i, 1, 320, seed=i)
                                 for i in range(16)])
    stop_ev = threading.Event()
    count = [0]

    def loader():
        k = 0
        while not stop_ev.is_set():
            aid = "coldx%02d" % (k % nids)
            if k % nids == 0:
                t = time.time_ns()
                os.utime(src, ns=(t, t))   # a new file identity: every id reloads
            try:
                d.load(aid)
                count[0] += 1
            except Exception as e:  # noqa: BLE001
                log("   loader: %s" % e)
                return
            k += 1
    ratios, idle, busy = [], [], []
    for r in range(ROUNDS):
        a = wrk(d.port, "/v1/apply", 4, 1, DUR, "post.lua", [bf, "/v1/apply"])
        th = threading.Thread(target=loader)
        c0 = count[0]
        stop_ev.clear()
        th.start()
        b = wrk(d.port, "/v1/apply", 4, 1, DUR, "post.lua", [bf, "/v1/apply"])
        stop_ev.set()
        th.join()
        idle.append(a["p99"])
        busy.append(b["p99"])
        ratios.append(b["p99"] / a["p99"])
        log("   round %d: p99 idle %d us, during %d loads %d us (p50 %d -> %d us)" % (
            r + 1, a["p99"], count[0] - c0, b["p99"], a["p50"], b["p50"]))
    DETAIL["cold_p99"] = {"idle": idle, "busy": busy}
    result("cold_load_other_p99", med(ratios), 1.25, "lower",
           "p99 of other adapters' 1x320 applies while 26 MB adapters load / without",
           headline=False)


def bench_registry():
    log("== Registry: 10,000 adapter files (1,000 resident) vs 1 ==")
    d1 = Daemon("reg1", REG1)
    d10 = Daemon("reg10k", REG10K)
    d1k = Daemon("reg1k", REG1K)
    try:
        d1.load("r00000")
        t0 = time.time()
        c = http.client.HTTPConnection("127.0.0.1", d10.port, timeout=60)
        for i in range(1000):
            c.request("POST", "/v1/adapters/r%05d/load" % i, body="{}",
                      headers={"Content-Type": "application/json"})
            rr = c.getresponse()
            rr.read()
            if rr.status != 200:
                raise RuntimeError("load r%05d: %d" % (i, rr.status))
        c.close()
        log("   1,000 adapters made resident in %.2f s" % (time.time() - t0))
        log("   resident: %d" % d10.metrics()["lokrd_adapters_resident"])
        bb = bodies_file("reg-apply", [apply_body("small.l0", "r00000", 1, 320)])
        pf1 = os.path.join(TMP, "reg-paths1")
        open(pf1, "w").write("/v1/adapters/r00000\n")
        pf10 = os.path.join(TMP, "reg-paths10k")
        open(pf10, "w").write("".join("/v1/adapters/r%05d\n" % i for i in range(1000)))
        ra, rg, lst = [], [], []
        # listings: the first one reads every header; later ones are what a client sees
        for d in (d1, d1k, d10):
            curl_get(d.port, "/v1/adapters")
        for r in range(ROUNDS):
            a1 = wrk(d1.port, "/v1/apply", 16, 2, DUR, "post.lua", [bb, "/v1/apply"])
            a10 = wrk(d10.port, "/v1/apply", 16, 2, DUR, "post.lua", [bb, "/v1/apply"])
            g1 = wrk(d1.port, "/", 16, 2, DUR, "getpaths.lua", [pf1])
            g10 = wrk(d10.port, "/", 16, 2, DUR, "getpaths.lua", [pf10])
            l1 = med([curl_get(d1.port, "/v1/adapters")[0] for _ in range(5)])
            l1k = med([curl_get(d1k.port, "/v1/adapters")[0] for _ in range(3)])
            l10 = med([curl_get(d10.port, "/v1/adapters")[0] for _ in range(3)])
            ra.append(a1["rps"] / a10["rps"])
            rg.append(g1["rps"] / g10["rps"])
            lst.append((l10 / 10000) / (l1k / 1000))
            log("   round %d: apply %.0f vs %.0f req/s (1 vs 10k), GET /v1/adapters/{id} %.0f "
                "vs %.0f req/s; GET /v1/adapters %.2f ms (1), %.1f ms (1k), %.1f ms (10k)" % (
                    r + 1, a1["rps"], a10["rps"], g1["rps"], g10["rps"], l1 * 1e3, l1k * 1e3,
                    l10 * 1e3))
        DETAIL["registry"] = {"apply_ratio": ra, "get_ratio": rg, "list_ratio": lst,
                              "list_ms_10k": l10 * 1e3, "list_ms_1k": l1k * 1e3,
                              "list_ms_1": l1 * 1e3}
        result("registry_10k_vs_1", max(med(ra), med(rg)), 1.1, "lower",
               "worst of apply and GET /v1/adapters/{id} time per request, 10k files/1k "
               "resident vs 1 (apply %.3f, get %.3f)" % (med(ra), med(rg)))
        result("listing_per_entry_10k_vs_1k", med(lst), 1.1, "lower",
               "GET /v1/adapters time per entry, 10,000 files vs 1,000", headline=False)
    finally:
        d1.stop()
        d10.stop()
        d1k.stop()


def bench_cliff():
    log("== Cache cliff: working set 2x the cache vs in budget (apply 8 x 1280, big.l0) ==")
    probe = Daemon("cliff-probe", CLIFF)
    rb = probe.load("m000")["resident_bytes"]
    probe.stop()
    n_in = 16 if Q else 32
    cache = rb * n_in + rb // 2
    d = Daemon("cliff", CLIFF, cache=cache, threads=A.threads)
    try:
        b_in = bodies_file("cliff-in", [apply_body("big.l0", "m%03d" % i, 8, 1280, seed=i)
                                        for i in range(n_in)])
        b_out = bodies_file("cliff-2x", [apply_body("big.l0", "m%03d" % i, 8, 1280, seed=i)
                                         for i in range(2 * n_in)])
        tr, pr, rows = [], [], []
        for r in range(ROUNDS):
            for i in range(n_in):
                d.load("m%03d" % i)
            m0 = d.metrics()
            a = wrk(d.port, "/v1/apply", 16, 2, DUR, "post.lua", [b_in, "/v1/apply", "random"])
            m1 = d.metrics()
            b = wrk(d.port, "/v1/apply", 16, 2, DUR, "post.lua", [b_out, "/v1/apply", "random"])
            m2 = d.metrics()

            def mr(x, y):
                h = y["lokrd_adapter_cache_hits_total"] - x["lokrd_adapter_cache_hits_total"]
                ms = y["lokrd_adapter_cache_misses_total"] - x["lokrd_adapter_cache_misses_total"]
                return ms / max(1, h + ms)
            tr.append(b["rps"] / a["rps"])
            pr.append(b["p99"] / a["p99"])
            log("   round %d: in budget %.0f req/s p99 %d us (miss %.1f%%); 2x %.0f req/s "
                "p99 %d us (miss %.1f%%)" % (r + 1, a["rps"], a["p99"], 100 * mr(m0, m1),
                                            b["rps"], b["p99"], 100 * mr(m1, m2)))
            rows.append((a["rps"], a["p50"], a["p99"], b["rps"], b["p50"], b["p99"],
                         mr(m0, m1), mr(m1, m2)))
        DETAIL["cliff"] = {"rows": rows, "resident_bytes": rb, "cache": cache, "n_in": n_in}
        result("cliff_throughput", med(tr), 0.5, "higher",
               "req/s with %d adapters uniform over a %d-adapter cache / in budget" % (
                   2 * n_in, n_in))
        result("cliff_p99", med(pr), 5.0, "lower", "p99 with the working set 2x the cache / "
               "in budget")
    finally:
        d.stop()


def pss_tree(pid):
    pids = [pid] + [int(x) for x in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
    tot = 0
    for p in pids:
        for line in open("/proc/%d/smaps_rollup" % p):
            if line.startswith("Pss:"):
                tot += int(line.split()[1]) * 1024
    return tot, pids


def bench_workers():
    log("== Base sharing: PSS of --workers 3 vs --workers 1, restart with the base kept ==")
    bodies = bodies_file("w-apply", [apply_body("big.l%d" % (i % 16), None, 1, 1280, seed=i)
                                     for i in range(32)])
    out = {}
    for w in (1, 3):
        d = Daemon("workers%d" % w, ADIR, threads=A.threads, workers=w)
        try:
            # every worker applies every layer: the base pages are touched by all
            wrk(d.port, "/v1/apply", 12, 2, 2 if Q else 4, "post.lua", [bodies, "/v1/apply"])
            time.sleep(0.3)
            pss, pids = pss_tree(d.p.pid)
            base_bytes = d.metrics()["lokrd_base_bytes"]
            out[w] = pss
            log("   --workers %d: %d processes, total PSS %.1f MB (base %.1f MB)" % (
                w, len(pids), pss / 1e6, base_bytes / 1e6))
            if w == 3:
                restart(d, pids)
        finally:
            d.stop()
    frac = (out[3] - out[1]) / 2 / base_bytes
    DETAIL["workers"] = {"pss1": out[1], "pss3": out[3], "base_bytes": base_bytes}
    result("worker_rss_fraction", frac, 0.05, "lower",
           "(PSS of --workers 3 - PSS of --workers 1) / 2 / base bytes")


def restart(d, pids):
    sup = pids[0]
    memfd = None
    for fd in os.listdir("/proc/%d/fd" % sup):
        try:
            if "memfd:lokrd-base" in os.readlink("/proc/%d/fd/%s" % (sup, fd)):
                memfd = "/proc/%d/fd/%s" % (sup, fd)
        except OSError:
            pass
    if not memfd:
        log("   (no memfd found in the supervisor: restart not measured)")
        return
    attach_ms = refs("attach", memfd, 5)
    times = []
    for k in range(2 if Q else 4):
        kids = [int(x) for x in open("/proc/%d/task/%d/children" % (sup, sup)).read().split()]
        victim = kids[0]
        time.sleep(1.1)   # the supervisor delays a worker that died within 1 s of its start
        pos = os.path.getsize(d.log)
        t0 = time.time()
        os.kill(victim, signal.SIGKILL)
        ready = None
        while time.time() - t0 < 10 and ready is None:
            with open(d.log) as f:
                f.seek(pos)
                for line in f:
                    m = re.match(r"(\S+)Z lokrd\[(\d+)\] info: base attached", line)
                    if m and int(m.group(2)) != victim and int(m.group(2)) not in kids:
                        ts = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S"))
                        ts += float("0" + m.group(1)[19:]) - time.timezone
                        ready = ts
            time.sleep(0.005)
        if ready is None:
            log("   (no new worker became ready)")
            return
        times.append((ready - t0) * 1e3)
        log("   worker %d killed: a new worker attached the kept base %.1f ms later "
            "(map + verify alone %.1f ms)" % (victim, times[-1], attach_ms))
    DETAIL["restart"] = {"ms": times, "attach_ms": attach_ms}
    result("restart_vs_attach", med(times) / attach_ms, 1.0, "lower",
           "worker restart to ready with the base kept / mmap + verify of the base "
           "(log timestamps: 1 ms resolution)", headline=False)


# ------------------------------------------------------------------ data

def make_data():
    global BASE, ADIR, REG1, REG1K, REG10K, CLIFF
    t0 = time.time()
    BASE = os.path.join(TMP, "base.safetensors")
    gen.base(BASE)
    ADIR = os.path.join(TMP, "adapters")
    os.makedirs(ADIR)
    for i in range(64):
        gen.tiny(os.path.join(ADIR, "t%03d.safetensors" % i), 100 + i)
    gen.cold(os.path.join(ADIR, "cold0.safetensors"), 7)
    for i in range(8):
        os.link(os.path.join(ADIR, "cold0.safetensors"),
                os.path.join(ADIR, "coldx%02d.safetensors" % i))
    REG10K = os.path.join(TMP, "reg10k")
    gen.many(REG10K, 10000)
    REG1 = os.path.join(TMP, "reg1")
    os.makedirs(REG1)
    shutil.copy(os.path.join(REG10K, "r00000.safetensors"), REG1)
    REG1K = os.path.join(TMP, "reg1k")
    os.makedirs(REG1K)
    for i in range(1000):
        n = "r%05d.safetensors" % i
        shutil.copy(os.path.join(REG10K, n), os.path.join(REG1K, n))
    CLIFF = os.path.join(TMP, "cliff")
    os.makedirs(CLIFF)
    gen.mid(os.path.join(CLIFF, "m000.safetensors"), 5)
    for i in range(1, 64):
        shutil.copy(os.path.join(CLIFF, "m000.safetensors"),
                    os.path.join(CLIFF, "m%03d.safetensors" % i))
    log("data: base %.0f MB, %d adapter files, in %.1f s" % (
        os.path.getsize(BASE) / 1e6, 64 + 9 + 10000 + 1 + 1000 + 64, time.time() - t0))


def build_refs():
    global REFS
    REFS = os.path.join(TMP, "refs")
    libdir = os.path.join(A.build, "lib", ".libs")
    cmd = ["cc", "-O2", "-march=native", "-I", os.path.join(SRC, "lib"),
           os.path.join(HERE, "refs.c"), "-o", REFS, "-L", libdir, "-llokr", "-lopenblas",
           "-lpthread", "-Wl,-rpath," + libdir]
    subprocess.run(cmd, check=True)


# ------------------------------------------------------------------ output

def write_json(path):
    rows = [{k: r[k] for k in ("name", "value", "goal", "better", "met")} for r in RESULTS]
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")
    log("wrote %s" % path)


def main():
    global A, Q, DUR, ROUNDS, TMP
    ap = argparse.ArgumentParser(prog="bench/load")
    ap.add_argument("--quick", action="store_true", help="under two minutes; writes "
                    "bench/results-load.json")
    ap.add_argument("--build", default=os.environ.get("LOKR_BUILD", "."),
                    help="build directory with daemon/lokrd and lib/.libs (default: .)")
    ap.add_argument("--threads", type=int, default=2, help="lokrd --threads (default 2)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 2 quick, 3 full)")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 2 / 8)")
    ap.add_argument("--only", help="comma list of: http,batching,merge,cold,registry,cliff,"
                    "workers")
    ap.add_argument("--no-readme", action="store_true", help="full run: do not rewrite the "
                    "End-to-end load section of bench/README.md")
    A = ap.parse_args()
    Q = A.quick
    A.build = os.path.abspath(A.build)
    A.lokrd = os.path.join(A.build, "daemon", "lokrd")
    if not os.access(A.lokrd, os.X_OK):
        sys.exit("bench/load: %s not found; run from the build directory or pass --build"
                 % A.lokrd)
    for tool in ("wrk", "nginx", "curl", "cc"):
        if not shutil.which(tool):
            sys.exit("bench/load: %s is required" % tool)
    DUR = A.duration or (2.0 if Q else 8.0)
    ROUNDS = A.rounds or (2 if Q else 3)
    only = set((A.only or "http,batching,merge,cold,registry,cliff,workers").split(","))
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    TMP = tempfile.mkdtemp(prefix="lokr-load.", dir="/tmp")
    os.chmod(TMP, 0o755)   # nginx's worker runs as nobody
    t_start = time.time()
    try:
        build_refs()
        make_data()
        root = os.path.join(TMP, "www")
        os.makedirs(root)
        open(os.path.join(root, "healthz"), "w").write('{"status":"ok"}')
        with open(os.path.join(root, "merge.bin"), "wb") as f:
            f.truncate(16 * 1280 * 1280 * 4 + 4096)
        ng = Nginx(root)
        d = Daemon("main", ADIR, threads=A.threads)
        log("lokrd %s, --threads %d; nginx 1 worker; wrk %gs x %d rounds; %s" % (
            A.lokrd, A.threads, DUR, ROUNDS, TMP))
        if "http" in only:
            bench_http(ng, d)
        if "batching" in only:
            bench_batching(d)
        if "merge" in only:
            bench_merge(d, ng)
        if "cold" in only:
            bench_cold(d)
        d.stop()
        ng.stop()
        if "registry" in only:
            bench_registry()
        if "cliff" in only:
            bench_cliff()
        if "workers" in only:
            bench_workers()
        log("")
        log("%-34s %10s %9s %s" % ("ratio", "value", "goal", "met"))
        for r in RESULTS + EXTRA:
            log("%-34s %10.4f %2s %-6g %s" % (r["name"], r["value"],
                                              "<=" if r["better"] == "lower" else ">=",
                                              r["goal"], "yes" if r["met"] else "NO"))
        log("(%.0f s)" % (time.time() - t_start))
        out = os.path.join(SRC, "bench", "results-load.json")
        if only == set("http,batching,merge,cold,registry,cliff,workers".split(",")):
            write_json(out)
            if not Q and not A.no_readme:
                import readme
                readme.write(os.path.join(SRC, "bench", "README.md"), RESULTS, EXTRA, DETAIL,
                             TMP, A, time.time() - t_start)
        else:
            log("(--only: %s not written)" % out)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
