#!/usr/bin/env python3
"""torch_peer.py - the PyTorch peers of bench/lokr_bench, same shapes, same
thread count (Debian's python3-torch, which runs on the same OpenBLAS).

  torch_peer.py --configs C_RUN.json --out TORCH.json [--threads T] [--quick]

For each selected configuration of the C run's grid (shape, W1/W2 split,
W2 form, rows R, distinct adapters D) it times, interleaved:
  materialize  PEFT / ComfyUI style: per adapter, dW = s * kron(W1, W2) is
               built (W2 = w2_a @ w2_b first when low-rank) and applied:
               F.linear(x, W0, b) + F.linear(x, l * dW) for that adapter's rows
               (PEFT's LoKr forward);
  bypass       LyCORIS's fixed-order bypass, one request at a time: base
               (torch.mv for one row, F.linear otherwise) plus order A
               (x viewed (n1, n2) @ W2^T, then W1 @ .), l * s;
  base         F.linear of all rows at once (mv for one row).
Clock: thread CPU time when torch and OpenBLAS run one thread (as the C
bench), wall time otherwise.
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int, default=0)
    a = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch_peer: PyTorch is not installed (apt-get install python3-torch); "
              "skipping the peer", file=sys.stderr)
        json.dump({"skipped": "no torch"}, open(a.out, "w"))
        return 0

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    clock = time.thread_time if a.threads == 1 else time.perf_counter
    samples = a.samples or (3 if a.quick else 5)
    min_sample = 0.002 if a.quick else 0.004

    crun = json.load(open(a.configs))
    grid = crun.get("grid", [])

    def wanted(c):
        key = (c["factor"], c["w2"])
        if key not in (("f-1", "r8"), ("f4", "full"), ("unb4", "r8"), ("f-1", "full")):
            return False
        if (c["rows"], c["distinct"]) not in ((1, 1), (8, 8), (64, 64)):
            return False
        if a.quick:
            # the headline case and the mixed 8x8 batches
            return (c["shape"] == "1280x1280" and key == ("f-1", "r8")) or \
                (c["rows"], c["distinct"]) == (8, 8) and key == ("f-1", "r8")
        return True

    sel = [c for c in grid if wanted(c)]
    out = {"threads": a.threads, "torch": torch.__version__,
           "clock": "thread_cpu" if a.threads == 1 else "wall", "configs": []}

    for c in sel:
        O, I = c["out"], c["in"]
        m1, n1, m2, n2, r = c["m1"], c["n1"], c["m2"], c["n2"], c["r"]
        R, D = c["rows"], c["distinct"]
        rows = R // D
        s = float(c["scale"])
        W0 = torch.randn(O, I) / (I ** 0.5)
        b = torch.randn(O) * 0.1
        ads = []
        for i in range(D):
            w1 = torch.randn(m1, n1) * 0.5
            if r:
                ads.append((w1, None, torch.randn(m2, r) / (I ** 0.5), torch.randn(r, n2) * 0.5,
                            0.5 + i / 64))
            else:
                ads.append((w1, torch.randn(m2, n2) / (I ** 0.5), None, None, 0.5 + i / 64))
        X = torch.randn(R, I)
        xs = [X[i * rows:(i + 1) * rows] for i in range(D)]

        def materialize():
            ys = []
            for (w1, w2, w2a, w2b, lam), x in zip(ads, xs):
                W2 = w2 if w2 is not None else w2a @ w2b
                dW = torch.kron(w1, W2) * s
                ys.append(F.linear(x, W0, b) + F.linear(x, dW * lam))
            return ys

        def bypass():
            ys = []
            for (w1, w2, w2a, w2b, lam), x in zip(ads, xs):
                for k in range(x.shape[0]):  # one request = one row here
                    xr = x[k]
                    y = torch.mv(W0, xr) + b
                    h = xr.view(n1, n2)
                    h = h @ w2.t() if w2 is not None else (h @ w2b.t()) @ w2a.t()
                    d = (w1 @ h).reshape(-1)
                    ys.append(y + d * (lam * s))
            return ys

        def base():
            if R == 1:
                return torch.mv(W0, X[0]) + b
            return F.linear(X, W0, b)

        def timeit(f):
            reps = 1
            while True:
                t0 = clock()
                for _ in range(reps):
                    f()
                dt = clock() - t0
                if dt >= min_sample or reps > 1 << 20:
                    return reps
                reps = max(reps + 1, min(reps * 10, int(reps * min_sample / max(dt, 1e-9) * 1.2) + 1))

        with torch.no_grad():
            fns = {"materialize": materialize, "bypass": bypass, "base": base}
            if D * O * I > 64 * 1280 * 2048:
                # 64 materialized 10240x1280 deltas take seconds per call
                del fns["materialize"]
            reps = {}
            for k, f in fns.items():
                f()
                reps[k] = timeit(f)
            res = {k: [] for k in fns}
            for _ in range(samples):
                for k, f in fns.items():
                    t0 = clock()
                    for _ in range(reps[k]):
                        f()
                    res[k].append((clock() - t0) / reps[k])
        rec = {k: c[k] for k in ("shape", "factor", "w2", "rows", "distinct")}
        rec["materialize_us"] = None
        for k in fns:
            rec[k + "_us"] = statistics.median(res[k]) * 1e6
        out["configs"].append(rec)
        print("torch %-10s %-5s %-4s R %2d D %2d  base %9.1f  materialize %9s  bypass %9.1f us"
              % (c["shape"], c["factor"], c["w2"], R, D, rec["base_us"],
                 "%.1f" % rec["materialize_us"] if rec["materialize_us"] else "skipped",
                 rec["bypass_us"]), flush=True)
    json.dump(out, open(a.out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
