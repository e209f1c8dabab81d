#!/usr/bin/env python3
"""--workers N: the supervisor loads the base once into a sealed memfd and
forks N serving processes that map it; each worker's private memory must be
a small fraction of the base (the weights are shared, not copied).  Prints
RSS / PSS / private bytes per worker (the "RSS per extra worker" figure).
A worker killed with SIGKILL is replaced; SIGTERM stops all with exit 0."""
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def mem(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def main():
    res = L.Results("workers")
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-workers-")
    try:
        rng = np.random.default_rng(7)
        # A 48 MiB f32 base (12 layers of 1024x1024), big enough to measure.
        base = {"blk%d.proj.weight" % i: rng.standard_normal((1024, 1024)).astype(np.float32)
                for i in range(12)}
        bpath = os.path.join(tmp, "base.safetensors")
        L.st_write(bpath, base)
        adir = os.path.join(tmp, "adapters")
        os.mkdir(adir)
        nbytes = sum(a.nbytes for a in base.values())
        contract = L.Contract()
        # Single process: it listens before the base is loaded, so requests
        # sent right after "listening on" meet 503 not_ready (the 48 MiB base
        # takes well over 100 ms to convert, seal and verify).
        d = L.Lokrd(bpath, adir, contract=contract, results=res, wait_ready=False)
        r1 = d.get("/readyz")
        r2 = d.get("/v1/model")
        h = d.get("/healthz")
        ck(h.status == 200, "healthz answers while the base loads")
        ck(r1.status == 503 and r1.code == "not_ready" and r1.header("Retry-After"),
           "readyz before the base is attached: 503 not_ready (%d)" % r1.status)
        ck(r2.status in (200, 503), "model while loading: %d" % r2.status)
        d.wait_ready()
        ck(d.get("/v1/model").status == 200, "model once ready")
        ck(d.stop() == 0, "single-process exit 0")

        d = L.Lokrd(bpath, adir, extra=["--workers", "2", "--threads", "1"],
                    contract=contract, results=res)
        kids = []
        for _ in range(100):
            kids = children(d.proc.pid)
            if len(kids) == 2:
                break
            time.sleep(0.05)
        ck(len(kids) == 2, "2 worker processes (%s)" % kids)
        x = rng.standard_normal((2, 1024)).astype(np.float32)
        for i in range(24):
            r = d.post("/v1/apply", {"layer": "blk%d.proj" % (i % 12), "input": L.tensor_json(
                x, "b64")})
            ck(r.status == 200, "apply through a worker")
        want = x @ base["blk3.proj.weight"].T
        r = d.post("/v1/apply", {"layer": "blk3.proj", "input": L.tensor_json(x, "b64")})
        ck(L.rel(L.tensor_from_json(r.json()["output"]), want) < 1e-5, "worker result")
        sup = mem(d.proc.pid)
        print("  base: %.1f MiB of f32 weights" % (nbytes / 2**20))
        print("  supervisor: Rss %.1f MiB, Pss %.1f MiB" % (sup["Rss"] / 2**20,
                                                          sup["Pss"] / 2**20))
        for k in kids:
            m = mem(k)
            priv = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
            print("  worker %d: Rss %.1f MiB (shared base %.1f MiB), Pss %.1f MiB, "
                  "private %.1f MiB" % (k, m["Rss"] / 2**20, m.get("Rss", 0) / 2**20 -
                                        priv / 2**20, m["Pss"] / 2**20, priv / 2**20))
            ck(priv < nbytes / 4, "worker %d private memory %.1f MiB << base %.1f MiB" % (
                k, priv / 2**20, nbytes / 2**20))
        # a crashed worker is replaced
        os.kill(kids[0], signal.SIGKILL)
        new = []
        for _ in range(100):
            time.sleep(0.05)
            new = children(d.proc.pid)
            if len(new) == 2 and kids[0] not in new:
                break
        ck(len(new) == 2 and kids[0] not in new, "killed worker replaced (%s -> %s)" % (
            kids, new))
        ok = 0
        for _ in range(40):
            try:
                ok += d.get("/healthz").status == 200
            except OSError:
                pass
        ck(ok == 40, "healthz after a worker crash (%d/40)" % ok)
        rc = d.stop()
        ck(rc == 0, "supervisor exit %s" % rc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
