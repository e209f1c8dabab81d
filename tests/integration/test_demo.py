#!/usr/bin/env python3
"""`lokr demo -o DIR` and the README demo: the demo data is deterministic,
every adapter loads in lokrd, the example requests answer correctly at SD1.5
shapes (apply checked against the merged weight from /v1/merge with numpy),
and every curl command that tests/demo.sh prints works as shown."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

LOKR = os.path.join(L.TOP_BUILDDIR, "tools", "lokr")
IDS = ["lokr-balanced", "lokr-unbalanced", "lokr-dora", "loha", "lora"]


def digest(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in sorted(files):
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def main():
    res = L.Results("demo")
    ck = res.check
    if not os.access(LOKR, os.X_OK):
        print("SKIP: tools/lokr is not built")
        return L.SKIP
    tmp = tempfile.mkdtemp(prefix="lokrd-demo-")
    try:
        demo = os.path.join(tmp, "demo")
        for d in (demo, os.path.join(tmp, "again")):
            p = subprocess.run([LOKR, "demo", "-o", d], capture_output=True, text=True)
            ck(p.returncode == 0, "lokr demo: %s" % p.stderr)
        ck(digest(demo) == digest(os.path.join(tmp, "again")), "demo output is deterministic")
        size = os.path.getsize(os.path.join(demo, "base.safetensors"))
        ck(size < 60e6, "demo base is modest: %.1f MB" % (size / 1e6))
        base, _ = L.st_read(os.path.join(demo, "base.safetensors"))
        d = L.Lokrd(os.path.join(demo, "base.safetensors"), os.path.join(demo, "adapters"),
                    contract=L.Contract(), results=res)
        try:
            ids = [a["id"] for a in d.get("/v1/adapters").json()["adapters"]]
            ck(sorted(ids) == sorted(IDS), "demo adapters listed: %s" % ids)
            for i in IDS:
                r = d.get("/v1/adapters/" + i)
                ck(r.status == 200, "demo adapter %s loads: %s" % (i, r.body[:200]))
            det = d.get("/v1/adapters/lokr-unbalanced").json()
            ck(all(l["kron"]["w1"] == [4, 4] for l in det["layers"]), "unbalanced: W1 4x4")
            for name in ("apply-linear", "apply-dora", "apply-conv"):
                req = L.json.load(open(os.path.join(demo, "requests", name + ".json")))
                r = d.post("/v1/apply", req)
                if not ck(r.status == 200, "%s: %d %s" % (name, r.status, r.body[:200])):
                    continue
                got = L.tensor_from_json(r.json()["output"])
                m = d.post("/v1/merge", {"adapters": req["adapters"], "layers": [req["layer"]]})
                w = L.st_read(m.body)[0][req["layer"] + ".weight"]
                b = base.get(req["layer"] + ".bias")
                x = L.tensor_from_json(req["input"])
                if w.ndim == 4:
                    want = L.conv2d_ref(x, w, b, (req.get("stride", 1),) * 2,
                                        (req.get("padding", 0),) * 2)
                else:
                    want = x.astype(np.float64) @ w.T.astype(np.float64)
                    if b is not None:
                        want = want + b
                e = L.rel(got, want)
                ck(e < 1e-4, "%s: apply vs merged weight rel %.3g" % (name, e))
            # The printed curl commands, run as shown (from the repository
            # root, here a directory holding demo/).
            if shutil.which("curl"):
                env = dict(os.environ, LOKRD_DEMO_DRY="1", LOKRD_PORT=str(d.port))
                out = subprocess.run(["sh", os.path.join(L.TOP_SRCDIR, "tests", "demo.sh")],
                                     env=env, capture_output=True, text=True).stdout
                cmds = [c for c in out.splitlines() if c.startswith("curl ")]
                ck(len(cmds) >= 10, "demo.sh prints curl commands")
                for c in cmds:
                    p = subprocess.run(c + " -w '\\n%{http_code}'", shell=True, cwd=tmp,
                                       capture_output=True, text=True)
                    code = int(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else 0
                    want = 400 if "nope" in c else None
                    ok = code == want if want else 200 <= code < 300
                    ck(p.returncode == 0 and ok, "curl as shown: %s -> %d" % (c[:90], code))
                ck(os.path.getsize(os.path.join(tmp, "merged.safetensors")) > 1e6,
                   "merged.safetensors written")
            else:
                print("note: curl not installed; the printed commands were not run")
        finally:
            rc = d.stop()
        ck(rc == 0, "lokrd exit %s" % rc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
