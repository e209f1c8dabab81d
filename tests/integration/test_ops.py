#!/usr/bin/env python3
"""Operating lokrd: the JSON config file (every key, validation messages that
name the key, the command line winning), SIGHUP (config reload and adapter
rescan without dropping connections or requests in flight), SIGTERM bounded
by drain_timeout, and the log lines in both formats."""
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
X = np.linspace(-1, 1, 128, dtype=np.float32).reshape(2, 64)


def apply_req(ids):
    return {"layer": "mid.proj", "adapters": [{"id": i} for i in ids],
            "input": L.tensor_json(X)}


def wait_log(d, pattern, timeout=10, start=0):
    """Wait until the log (from offset `start`) matches; return the match."""
    end = time.time() + timeout
    while time.time() < end:
        m = re.search(pattern, d.logtext()[start:])
        if m:
            return m
        time.sleep(0.05)
    return None


def metric(text, name, labels=None):
    """Value of the first sample `name{...}` whose labels include `labels`."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(lab.get(k) == v for k, v in (labels or {}).items()):
            return float(m.group(4)), lab
    return None, None


def run_lokrd(*args, timeout=30):
    return subprocess.run([L.LOKRD] + list(args), capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------ config

def config_validation(res, tmp):
    """Every key's bad value is refused (exit 2) with a message naming the
    key and the file; the command line's bad values name the option."""
    ck = res.check
    good = {"base": BASE, "adapters": tmp}
    bad = {
        "base": 5, "adapters": 7, "listen": "nohost", "threads": 2000, "workers": 0,
        "cache_bytes": "12X", "log_format": "xml", "log_level": "loud",
        "drain_timeout": -1,
    }
    cfg = os.path.join(tmp, "bad.json")
    for key, value in bad.items():
        c = dict(good)
        c[key] = value
        with open(cfg, "w") as f:
            json.dump(c, f)
        p = run_lokrd("--config", cfg)
        ck(p.returncode == 2 and ('"%s"' % key) in p.stderr and cfg in p.stderr,
           "config %s=%r: exit 2 naming the key (%d: %s)" % (key, value, p.returncode,
                                                           p.stderr.strip()))
    with open(cfg, "w") as f:
        json.dump(dict(good, cache_byte=1), f)
    p = run_lokrd("--config", cfg)
    ck(p.returncode == 2 and 'unknown key "cache_byte"' in p.stderr, "unknown key named")
    with open(cfg, "w") as f:
        f.write('{"base": "%s",\n "threads": }' % BASE)
    p = run_lokrd("--config", cfg)
    ck(p.returncode == 2 and (cfg + ":2") in p.stderr, "JSON syntax error with file:line (%s)"
       % p.stderr.strip())
    for opt, value in (("--threads", "abc"), ("--cache-bytes", "1Q"), ("--log-format", "xml"),
                       ("--drain-timeout", "soon"), ("--log-level", "loud"),
                       ("--workers", "0")):
        p = run_lokrd("--base", BASE, "--adapters", tmp, opt, value)
        ck(p.returncode == 2 and ("invalid %s" % opt) in p.stderr,
           "command line %s %s: exit 2 naming the option (%s)" % (opt, value, p.stderr.strip()))
    p = run_lokrd("--help")
    for opt in ("--drain-timeout", "--log-level", "--check-config", "--config"):
        ck(opt in p.stdout, "--help lists %s" % opt)


def config_every_key(res, contract, tmp):
    """A config file with every key starts lokrd; the command line wins."""
    ck = res.check
    adir = os.path.join(tmp, "every")
    os.mkdir(adir)
    cfg = os.path.join(tmp, "every.json")
    with open(cfg, "w") as f:
        json.dump({"base": [BASE], "adapters": adir, "listen": "127.0.0.1:1", "threads": 3,
                   "workers": 1, "cache_bytes": "24M", "log_format": "json",
                   "log_level": "info", "drain_timeout": 7}, f)
    d = L.Lokrd(BASE, adir, extra=["--config", cfg, "--cache-bytes", "20M"],
                contract=contract, results=res)
    try:
        st = d.get("/v1/status").json()
        ck(st["threads"] == 3, "config threads used (%s)" % st["threads"])
        ck(st["cache"]["budget_bytes"] == 20 << 20, "command line --cache-bytes wins (%s)"
           % st["cache"]["budget_bytes"])
        ck('"msg":"listening on 127.0.0.1:' in d.logtext(),
           "config log_format json; --listen from the command line wins")
    finally:
        ck(d.stop() == 0, "every-key daemon exit 0")


# ------------------------------------------------------------------ SIGHUP

def sighup(res, contract, tmp):
    ck = res.check
    adir = os.path.join(tmp, "hup")
    os.mkdir(adir)
    for a in ("lora", "loha"):
        shutil.copy(os.path.join(F, "adapters", a + ".safetensors"), adir)
    cfg = os.path.join(tmp, "hup.json")

    def write_cfg(**kw):
        c = {"cache_bytes": "64M", "log_format": "text"}
        c.update(kw)
        with open(cfg, "w") as f:
            json.dump(c, f)
    write_cfg()
    d = L.Lokrd(BASE, adir, extra=["--config", cfg, "--threads", "2"], contract=contract,
                results=res)
    try:
        keep = d.connect()
        r = d.post("/v1/apply", apply_req(["lora"]), conn=keep)
        ck(r.status == 200, "apply lora before SIGHUP")
        want_lora = L.tensor_from_json(r.json()["output"])
        ck(d.post("/v1/adapters/loha/load", {}, conn=keep).status == 200, "load loha")
        sock_before = keep.sock
        m, _ = metric(d.get("/metrics").body.decode(), "lokrd_adapter_cache_budget_bytes")
        ck(m == 64 << 20, "budget 64M before the reload (%s)" % m)

        # A request in flight: headers and half of the body sent.
        body = json.dumps(apply_req(["lora"])).encode()
        inflight = socket.create_connection(("127.0.0.1", d.port), timeout=20)
        inflight.sendall(b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                         + body[:len(body) // 2])
        time.sleep(0.1)

        # New settings, a new adapter file, a removed one.
        write_cfg(cache_bytes="32M", log_format="json")
        shutil.copy(os.path.join(F, "adapters", "lokr_balanced.safetensors"),
                    os.path.join(adir, "fresh.safetensors"))
        os.unlink(os.path.join(adir, "loha.safetensors"))
        mark = len(d.logtext())
        d.proc.send_signal(signal.SIGHUP)
        m = wait_log(d, r"adapter directory rescanned: (\d+) removed, (\d+) changed", start=mark)
        ck(m is not None and m.group(1) == "1", "SIGHUP rescan: loha removed (%s)"
           % (m.group(0) if m else d.logtext()[mark:]))

        inflight.sendall(body[len(body) // 2:])
        status, _, rbody = L.read_response(inflight)
        ck(status == 200, "request in flight across SIGHUP: %d" % status)
        if status == 200:
            got = L.tensor_from_json(json.loads(rbody)["output"])
            ck(L.rel(got, want_lora) < 1e-6, "in-flight answer is right")

        r = d.get("/v1/adapters", conn=keep)
        ck(r.status == 200 and keep.sock is sock_before,
           "keep-alive connection survives SIGHUP (same socket)")
        ids = [a["id"] for a in r.json()["adapters"]]
        ck("fresh" in ids and "loha" not in ids, "listing after SIGHUP: %s" % ids)
        ck(d.post("/v1/apply", apply_req(["fresh"]), conn=keep).status == 200,
           "a new file is served")
        ck(d.post("/v1/apply", apply_req(["loha"]), conn=keep).status == 404,
           "a removed file is gone (404)")
        text = d.get("/metrics", conn=keep).body.decode()
        m, _ = metric(text, "lokrd_adapter_cache_budget_bytes")
        ck(m == 32 << 20, "reloaded cache budget 32M (%s)" % m)
        _, lab = metric(text, "lokrd_adapter_residency")
        run_ids = (lab or {}).get("running_adapters", "").split(",")
        ck(lab is not None and "loha" not in run_ids and "fresh" in run_ids and "lora" in run_ids,
           "residency after the rescan: %s" % lab)
        m, _ = metric(text, "lokrd_config_reloads_total")
        ck(m == 1, "lokrd_config_reloads_total 1 (%s)" % m)
        log_after = d.logtext()[mark:]
        ck(re.search(r'^\{"ts":"[^"]+","level":"info","msg":"request","method":"GET",'
                     r'"path":"/v1/adapters"', log_after, re.M) is not None,
           "log format switched to JSON by the reload")

        # A bad file is refused; the running settings stay.
        with open(cfg, "w") as f:
            f.write("{not json")
        mark = len(d.logtext())
        d.proc.send_signal(signal.SIGHUP)
        ck(wait_log(d, r"rejected", start=mark) is not None, "bad config: reload refused")
        text = d.get("/metrics", conn=keep).body.decode()
        ck(metric(text, "lokrd_config_reload_errors_total")[0] == 1, "reload error counted")
        ck(metric(text, "lokrd_adapter_cache_budget_bytes")[0] == 32 << 20,
           "settings kept after a bad reload")
        ck(d.post("/v1/apply", apply_req(["lora"]), conn=keep).status == 200,
           "still serving after a bad reload")

        # A setting that needs a restart is reported, not applied.
        write_cfg(cache_bytes="32M", log_format="json", threads=1, workers=2)
        mark = len(d.logtext())
        d.proc.send_signal(signal.SIGHUP)
        m = wait_log(d, r"need a restart: ([a-z_, ]+)", start=mark)
        ck(m is not None and "workers" in m.group(1) and "threads" not in m.group(1),
           "restart-only setting reported; the command line's --threads still wins (%s)"
           % (m.group(1) if m else None))
        ck(d.get("/healthz", conn=keep).status == 200, "same listener after that reload")
        keep.close()
    finally:
        ck(d.stop() == 0, "SIGHUP daemon exit 0")


# ------------------------------------------------------------------ SIGTERM

def drain_timeout(res, contract, tmp):
    """A client stalled mid-request cannot hold the exit past drain_timeout."""
    ck = res.check
    adir = os.path.join(tmp, "drain")
    os.mkdir(adir)
    d = L.Lokrd(BASE, adir, extra=["--drain-timeout", "1"], contract=contract, results=res)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n{\"layer\"")
    time.sleep(0.2)
    t0 = time.time()
    d.proc.send_signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.time() - t0
    ck(rc == 0, "stalled client: exit 0 (%s)" % rc)
    ck(0.9 <= took < 4, "exit bounded by drain_timeout 1 s (%.2f s)" % took)
    ck("closing 1 unfinished requests" in d.logtext(), "the stalled request was closed")
    s.close()
    d.stop()


# ------------------------------------------------------------------ logs

TEXT_REQ = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z lokrd\[\d+\] info: "
                      r"(\S+) (\S+) (\d+) adapters=(\S+) rows=(\d+) us=(\d+)$")


def logs(res, contract, tmp):
    ck = res.check
    adir = os.path.join(tmp, "logs")
    os.mkdir(adir)
    for a in ("lora", "loha"):
        shutil.copy(os.path.join(F, "adapters", a + ".safetensors"), adir)
    for fmt in ("text", "json"):
        d = L.Lokrd(BASE, adir, extra=["--log-format", fmt], contract=contract, results=res)
        ck(d.post("/v1/apply", apply_req(["lora", "loha"])).status == 200, "apply (%s)" % fmt)
        ck(d.get("/nope", check=False).status == 404, "404 (%s)" % fmt)
        ck(d.get("/metrics").status == 200, "metrics (%s)" % fmt)
        ck(d.stop() == 0, "exit 0 (%s)" % fmt)
        lines = [ln for ln in d.logtext().splitlines() if ln.strip()]
        reqs = []
        events = []
        for ln in lines:
            if fmt == "json":
                try:
                    o = json.loads(ln)
                except ValueError:
                    ck(False, "JSON log line does not parse: %r" % ln)
                    continue
                ck(isinstance(o.get("ts"), str) and o.get("level") in
                   ("debug", "info", "warn", "error") and isinstance(o.get("pid"), int),
                   "JSON line has ts, level, pid: %r" % ln)
                if o.get("msg") == "request":
                    ck(set(o) >= {"method", "path", "status", "adapters", "rows", "us"} and
                       isinstance(o["adapters"], list), "request line fields: %r" % ln)
                    reqs.append((o["method"], o["path"], o["status"], o["adapters"],
                                 o["rows"], o["us"]))
                else:
                    events.append(o["msg"])
            else:
                m = TEXT_REQ.match(ln)
                if m:
                    ids = [] if m.group(4) == "-" else m.group(4).split(",")
                    reqs.append((m.group(1), m.group(2), int(m.group(3)), ids,
                                 int(m.group(5)), int(m.group(6))))
                else:
                    mm = re.match(r"^\S+ lokrd\[\d+\] (debug|info|warn|error): (.*)$", ln)
                    ck(mm is not None, "text line shape: %r" % ln)
                    if mm:
                        events.append(mm.group(2))
        apply_lines = [r for r in reqs if r[1] == "/v1/apply"]
        ck(len(apply_lines) == 1 and apply_lines[0][0] == "POST" and apply_lines[0][2] == 200
           and apply_lines[0][3] == ["lora", "loha"] and apply_lines[0][4] == 2
           and apply_lines[0][5] > 0,
           "%s: apply logged with method, status, adapter ids, rows, us: %s" % (fmt, apply_lines))
        ck(any(r[1] == "/nope" and r[2] == 404 for r in reqs), "%s: 404 logged" % fmt)
        for ev in ("listening on", "base attached", "SIGTERM: no new connections",
                   "drained; exiting"):
            ck(any(ev in e for e in events), "%s: lifecycle event %r logged" % (fmt, ev))


def main():
    res = L.Results("ops")
    contract = L.Contract()
    tmp = tempfile.mkdtemp(prefix="lokrd-ops-")
    try:
        config_validation(res, tmp)
        config_every_key(res, contract, tmp)
        sighup(res, contract, tmp)
        drain_timeout(res, contract, tmp)
        logs(res, contract, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
