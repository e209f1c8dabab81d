#!/usr/bin/env python3
"""--shm-name (a named POSIX base segment shared by independent lokrd
processes) and --parallelism workers|blas, against the real lokrd.

Named segment: the first process creates /dev/shm/NAME (mode 0440), a
second one with the same --base attaches to it (log line, /v1/model) and
both answer identically; a segment corrupted between runs (bytes flipped
in the data, or replaced by garbage), or made from other base files, is
rejected and rebuilt; two processes started at once make one segment;
--workers 2 workers attach to it; bad names are refused.  The segments are
unlinked at the end.

Parallelism: both modes start, log their choice and OpenBLAS's thread
count, report it in /v1/status and answer the same."""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

FIX = L.FIXTURES
BASE = os.path.join(FIX, "base.safetensors")
ADAPTERS = os.path.join(FIX, "adapters")
SETS = [[], [{"id": "lokr_balanced"}], [{"id": "lokr_dora", "multiplier": 0.5}, {"id": "lora"}]]


def outputs(d, x):
    """Outputs of every set in SETS on down.attn.to_q for input x."""
    out = []
    for s in SETS:
        r = d.post("/v1/apply", {"layer": "down.attn.to_q", "adapters": s,
                                 "input": L.tensor_json(x, "b64")})
        if r.status != 200:
            out.append(None)
            continue
        out.append(L.tensor_from_json(r.json()["output"]))
    return out


def same(a, b):
    return all(p is not None and q is not None and p.shape == q.shape and
               np.array_equal(p, q) for p, q in zip(a, b))


def main():
    res = L.Results("shm_named")
    ck = res.check
    if not os.path.isdir("/dev/shm"):
        print("SKIP: no /dev/shm")
        return L.SKIP
    contract = L.Contract()
    tmp = tempfile.mkdtemp(prefix="lokrd-shm-")
    name = "lokrd-test-%d" % os.getpid()
    names = [name, name + ".race", name + ".w"]
    seg = "/dev/shm/" + name
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 320)).astype(np.float32)
    expected, _ = L.st_read(os.path.join(FIX, "expected", "lokr_balanced.safetensors"))
    try:
        for n in names:
            if os.path.exists("/dev/shm/" + n):
                os.unlink("/dev/shm/" + n)

        # ---- first process creates, second attaches
        a = L.Lokrd(BASE, ADAPTERS, extra=["--shm-name", name], contract=contract,
                    results=res)
        ck("shm segment /%s created" % name in a.logtext(), "A created the segment")
        st = os.stat(seg)
        ck(stat.S_IMODE(st.st_mode) == 0o440, "segment mode %o" % stat.S_IMODE(st.st_mode))
        m = a.get("/v1/model").json()["shm"]
        ck(m["kind"] == "posix" and m["name"] == "/" + name and m["sealed"] is False and
           m["bytes"] == st.st_size, "A /v1/model shm %s" % m)
        b = L.Lokrd(BASE, ADAPTERS, extra=["--shm-name", "/" + name], contract=contract,
                    results=res)
        ck("attached from the existing shm segment" in b.logtext(),
           "B attached to A's segment:\n" + b.logtext())
        ck("created" not in b.logtext(), "B did not create one")
        m = b.get("/v1/model").json()["shm"]
        ck(m["kind"] == "posix" and m["name"] == "/" + name, "B /v1/model shm %s" % m)
        st2 = b.get("/v1/status").json()
        ck(st2["base"]["shm"] == "/" + name, "B /v1/status base.shm %s" % st2["base"])
        oa, ob = outputs(a, x), outputs(b, x)
        ck(same(oa, ob), "A and B answer identically")
        # correctness against LyCORIS's own output, through the shared segment
        r = b.post("/v1/apply", {"layer": "down.attn.to_q", "adapters": [{"id": "lokr_balanced"}],
                                 "input": L.tensor_json(expected["down.attn.to_q.x"], "b64")})
        ck(r.status == 200 and L.rel(L.tensor_from_json(r.json()["output"]),
                                     expected["down.attn.to_q.y"]) < 1e-4,
           "B's output matches the fixture")
        ck(a.stop() == 0 and b.stop() == 0, "A and B exit 0")
        ck(os.path.exists(seg), "the segment outlives its processes")

        # ---- corrupted between runs: bytes flipped in the data
        os.chmod(seg, 0o640)
        with open(seg, "r+b") as f:
            f.seek(st.st_size // 2)
            f.write(os.urandom(4096))
        c = L.Lokrd(BASE, ADAPTERS, extra=["--shm-name", name], contract=contract, results=res)
        log = c.logtext()
        ck("shm segment /%s rejected" % name in log and "checksum" in log,
           "flipped bytes rejected (checksum):\n" + log)
        ck("shm segment /%s created" % name in log, "and rebuilt")
        ck(stat.S_IMODE(os.stat(seg).st_mode) == 0o440, "rebuilt segment is 0440 again")
        ck(same(outputs(c, x), oa), "rebuilt segment answers as before")
        ck(c.stop() == 0, "C exit 0")

        # ---- replaced by garbage (shorter than a header)
        os.chmod(seg, 0o640)
        with open(seg, "wb") as f:
            f.write(b"garbage\n" * 8)
        c = L.Lokrd(BASE, ADAPTERS, extra=["--shm-name", name], contract=contract, results=res)
        log = c.logtext()
        ck("rejected" in log and "shorter than its header" in log,
           "garbage rejected:\n" + log)
        ck(same(outputs(c, x), oa), "rebuilt after garbage answers as before")
        ck(c.stop() == 0, "exit 0")

        # ---- a valid segment made from other base files is not used
        other = os.path.join(tmp, "base-copy.safetensors")
        shutil.copyfile(BASE, other)
        c = L.Lokrd(other, ADAPTERS, extra=["--shm-name", name], contract=contract,
                    results=res)
        log = c.logtext()
        ck("rejected" in log and "other base files" in log,
           "segment of other base files rejected:\n" + log)
        ck(c.get("/v1/model").json()["sources"] == [other], "serves its own base")
        ck(c.stop() == 0, "exit 0")

        # ---- two starters at once: one segment, one creator
        race = name + ".race"
        p = [L.Lokrd(BASE, ADAPTERS, extra=["--shm-name", race], contract=contract,
                     results=res, wait_ready=False) for _ in range(2)]
        for d in p:
            d.wait_ready()
        created = sum("shm segment /%s created" % race in d.logtext() for d in p)
        attached = sum("attached from the existing" in d.logtext() for d in p)
        ck(created == 1 and attached == 1, "concurrent start: %d created, %d attached" % (
            created, attached))
        ck(same(outputs(p[0], x), outputs(p[1], x)), "concurrent starters agree")
        for d in p:
            ck(d.stop() == 0, "exit 0")

        # ---- --workers 2: the supervisor opens it, the workers attach its fd
        w = L.Lokrd(BASE, ADAPTERS, extra=["--shm-name", name + ".w", "--workers", "2",
                                           "--threads", "1"], contract=contract, results=res)
        ok = 0
        for _ in range(8):
            ok += same(outputs(w, x), oa)
        ck(ok == 8, "--workers 2 on a named segment (%d/8 identical)" % ok)
        ck(w.get("/v1/model").json()["shm"]["name"] == "/" + name + ".w", "worker reports it")
        ck(w.stop() == 0, "supervisor exit 0")

        # ---- bad names are refused at start
        for bad in ["a/b", "x" * 201, "..", "", "/", "sp ace"]:
            r = subprocess.run([L.LOKRD, "--base", BASE, "--adapters", ADAPTERS,
                                "--listen", "127.0.0.1:0", "--shm-name", bad],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
            ck(r.returncode == 2 and b"shm-name" in r.stderr,
               "--shm-name %r refused (exit %d: %s)" % (bad[:20], r.returncode, r.stderr[:200]))

        # ---- parallelism
        outs = {}
        for mode, threads, blas in [("workers", 2, 1), ("blas", 2, 2), ("blas", 3, 3)]:
            d = L.Lokrd(BASE, ADAPTERS, extra=["--parallelism", mode, "--threads", str(threads)],
                        contract=contract, results=res)
            log = d.logtext()
            workers = 1 if mode == "blas" else threads
            ck("parallelism %s: %d compute thread" % (mode, workers) in log and
               "| threads %d |" % blas in log, "%s/%d start-up line:\n%s" % (mode, threads, log))
            s = d.get("/v1/status").json()
            ck(s["parallelism"] == mode and s["threads"] == workers and
               s["blas_threads"] == blas, "%s/%d /v1/status %s %s %s" % (
                   mode, threads, s["parallelism"], s["threads"], s["blas_threads"]))
            outs[(mode, threads)] = outputs(d, x)
            ck(all(o is not None for o in outs[(mode, threads)]), "%s serves" % mode)
            ck(d.stop() == 0, "%s exit 0" % mode)
        ref = outs[("workers", 2)]
        for k, o in outs.items():
            worst = max(L.rel(p, q) for p, q in zip(o, ref))
            ck(worst < 1e-6, "%s vs workers: rel %.2g" % (k, worst))
            print("  %s/%d vs workers/2: %s (max rel %.2g)" % (
                k[0], k[1], "bit-identical" if same(o, ref) else "not bit-identical", worst))
        ck(same(outs[("blas", 2)], ref), "blas and workers bit-identical on this size")
        # the config key, and a bad value
        cfg = os.path.join(tmp, "c.json")
        with open(cfg, "w") as f:
            json.dump({"parallelism": "blas", "threads": 2, "shm_name": name}, f)
        d = L.Lokrd(BASE, ADAPTERS, extra=["--config", cfg], contract=contract, results=res)
        s = d.get("/v1/status").json()
        ck(s["parallelism"] == "blas" and s["blas_threads"] == 2 and
           s["base"]["shm"] == "/" + name, "config keys parallelism and shm_name")
        ck(d.stop() == 0, "exit 0")
        r = subprocess.run([L.LOKRD, "--base", BASE, "--adapters", ADAPTERS,
                            "--parallelism", "both"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=30)
        ck(r.returncode == 2 and b"parallelism" in r.stderr, "--parallelism both refused")
    finally:
        for n in names:
            try:
                os.unlink("/dev/shm/" + n)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    ck(not any(os.path.exists("/dev/shm/" + n) for n in names), "segments cleaned up")
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
