#!/usr/bin/env python3
"""The public LyCORIS fixtures through HTTP: every adapted layer of every case,
merged at multiplier 1 and 0.5 (/v1/merge) and applied (/v1/apply), against
LyCORIS's own outputs.  Tolerances (fixtures README): merged rel <= 1e-5,
y rel <= 5e-5.  DoRA at 0.5: lokrd interpolates, W0 + 0.5 (merged - W0)."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402

MERGED_TOL = 1e-5
Y_TOL = 5e-5


def main():
    res = L.Results("fixtures through HTTP")
    contract = L.Contract()
    cases = json.load(open(os.path.join(L.FIXTURES, "cases.json")))
    base_path = os.path.join(L.FIXTURES, "base.safetensors")
    base, _ = L.st_read(base_path)
    tmp = tempfile.mkdtemp(prefix="lokrd-fixtures-")
    counts = {"merged": 0, "merged_m0.5": 0, "y": 0, "y_b64": 0}
    worst = {k: 0.0 for k in counts}
    try:
        for c in cases["cases"]:
            shutil.copy(os.path.join(L.FIXTURES, c["adapter_file"]),
                        os.path.join(tmp, c["name"] + ".safetensors"))
        d = L.Lokrd(base_path, tmp, contract=contract, results=res)
        for c in cases["cases"]:
            name = c["name"]
            exp, _ = L.st_read(os.path.join(L.FIXTURES, c["expected_file"]))
            dora = {ly["layer"]: bool(ly.get("dora")) for ly in c["layers"]}
            for mult, key in ((1.0, "merged"), (0.5, "merged_m0.5")):
                r = d.post("/v1/merge", {"adapters": [{"id": name, "multiplier": mult}]})
                if not res.check(r.status == 200, "%s merge x%g: %d %s" % (
                        name, mult, r.status, r.body[:200])):
                    continue
                got, _ = L.st_read(r.body)
                res.check(sorted(got) == sorted(l + ".weight" for l in c["layers_adapted"]),
                          "%s: merge keys %s" % (name, sorted(got)))
                for layer in c["layers_adapted"]:
                    want = exp[layer + ".merged"]
                    w0 = base[layer + ".weight"]
                    if mult != 1.0:
                        want = exp[layer + ".merged_m0.5"]
                        if dora.get(layer):
                            want = w0 + 0.5 * (exp[layer + ".merged"] - w0)
                    e = L.rel(got.get(layer + ".weight"), want)
                    worst[key] = max(worst[key], e)
                    counts[key] += 1
                    res.check(e <= MERGED_TOL, "%s %s %s rel %.3g" % (name, layer, key, e))
            for layer in c["layers_adapted"]:
                x = exp[layer + ".x"]
                y = exp[layer + ".y"]
                req = {"layer": layer, "adapters": [{"id": name, "multiplier": 1.0}]}
                if x.ndim == 4:
                    k = base[layer + ".weight"].shape[2]
                    req["stride"] = 1
                    req["padding"] = k // 2
                for form, key in (("data", "y"), ("b64", "y_b64")):
                    req["input"] = L.tensor_json(x, form)
                    r = d.post("/v1/apply", req)
                    if not res.check(r.status == 200, "%s %s apply: %d %s" % (
                            name, layer, r.status, r.body[:200])):
                        continue
                    out = r.json()["output"]
                    res.check(("b64" in out) == (form == "b64") and out["dtype"] == "f32",
                              "%s %s: response form" % (name, layer))
                    e = L.rel(L.tensor_from_json(out), y)
                    worst[key] = max(worst[key], e)
                    counts[key] += 1
                    res.check(e <= Y_TOL, "%s %s %s rel %.3g" % (name, layer, key, e))
        rc = d.stop()
        res.check(rc == 0, "lokrd exit status %d" % rc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for k in counts:
        print("  %-12s %3d tensors, worst rel %.3g" % (k, counts[k], worst[k]))
    print("  %d responses checked against proto/openapi.yaml" % contract.checked)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
