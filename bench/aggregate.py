#!/usr/bin/env python3
"""aggregate.py - combine bench/lokr_bench and bench/torch_peer.py runs.

  aggregate.py --c RUN1.json [RUN2.json ...] --torch T1.json [T2.json ...]
               --results results.json [--readme README.md --plot-dir DIR --command CMD]

The C runs and the torch runs alternate (C1 T1 C2 T2 ...); every ratio is
first formed inside one run (C: lokrd vs the base measured back to back) or
between a C run and the torch run right after it, then the median over
runs is taken.  Prints every headline target beside its goal and writes
them as a JSON list of {"name", "value", "goal", "better", "met"}.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

TARGETS = [
    # name, goal, better, what
    ("overhead_64x64_balanced", 1.10, "lower",
     "64 rows x 64 distinct LoKr adapters (factor -1, W2 r8/r16) / base sgemm, worst shape"),
    ("overhead_64x64_unbalanced", 1.10, "lower",
     "the same with factor 4 and unbalanced 4 (W2 r8/r16), worst shape"),
    ("floor_ratio_worst", 1.5, "lower",
     "time / max(MAC floor, bytes floor), worst configuration measured"),
    ("distinct_vs_single", 1.10, "lower",
     "64 rows x 64 adapters / 64 rows x 1 adapter (factor -1, W2 r8/r16), worst shape"),
    ("base_vs_openblas", 1.10, "lower",
     "lokr_exec with empty sets / raw sgemv|sgemm, worst shape and batch"),
    ("factored_vs_materialize", 3.0, "higher",
     "8 rows x 8 adapters: merge-per-adapter (C) / lokrd, worst configuration"),
    ("factored_vs_torch_bypass", 2.5, "higher",
     "1280x1280, 64 requests x 64 adapters: torch per request (mv + fixed-order bypass) / lokrd"),
    ("dora_vs_lokr", 1.05, "lower",
     "LoKr+DoRA (output axis, vector cached) / LoKr apply, worst shape and batch"),
    ("dora_vector_vs_read", 1.5, "lower",
     "computing one DoRA vector / one read of W0 at STREAM read bandwidth, worst shape"),
]


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(v, f):
    return f % v if v is not None else "skipped"


def key(c):
    return (c["shape"], c["factor"], c["w2"], c["rows"], c["distinct"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c", nargs="+", required=True)
    ap.add_argument("--torch", nargs="*", default=[])
    ap.add_argument("--results", required=True)
    ap.add_argument("--readme")
    ap.add_argument("--plot-dir")
    ap.add_argument("--command", default="bench/run")
    a = ap.parse_args()

    cruns = [json.load(open(p)) for p in a.c]
    truns = []
    for p in a.torch:
        try:
            t = json.load(open(p))
            if "configs" in t:
                truns.append(t)
        except (OSError, ValueError):
            pass

    # ---- per-config medians over runs
    grid = {}
    for run in cruns:
        for c in run.get("grid", []):
            grid.setdefault(key(c), []).append(c)
    rows = []
    for k, cs in grid.items():
        c0 = dict(cs[0])
        for f in ("base_us", "lokrd_us", "ratio", "mac_floor_us", "bytes_floor_us",
                  "floor_ratio", "merge_over_lokrd"):
            c0[f] = med([c.get(f) for c in cs])
        rows.append(c0)

    # torch ratios, per run pair
    tgrid = {}
    for i, t in enumerate(truns):
        for c in t["configs"]:
            tgrid.setdefault(key(c), {})[i] = c
    for r in rows:
        k = key(r)
        if k not in tgrid:
            continue
        rm, rb = [], []
        for i, tc in tgrid[k].items():
            if i >= len(cruns):
                continue
            cc = [c for c in cruns[i].get("grid", []) if key(c) == k]
            if not cc:
                continue
            if tc.get("materialize_us"):
                rm.append(cc[0]["lokrd_us"] / tc["materialize_us"])
            rb.append(cc[0]["lokrd_us"] / tc["bypass_us"])
        r["torch_materialize_us"] = med([tc.get("materialize_us") for tc in tgrid[k].values()])
        r["torch_bypass_us"] = med([tc["bypass_us"] for tc in tgrid[k].values()])
        r["lokrd_over_torch_materialize"] = med(rm)
        r["lokrd_over_torch_bypass"] = med(rb)

    base = {}
    for run in cruns:
        for b in run.get("base", []):
            base.setdefault((b["shape"], b["rows"]), []).append(b)
    dora = {}
    for run in cruns:
        for d in run.get("dora", []):
            dora.setdefault((d["shape"], d["axis"], d["rows"], d["distinct"]), []).append(d)
    dvec = {}
    for run in cruns:
        for d in run.get("dora_vector", []):
            dvec.setdefault(d["shape"], []).append(d)
    stream_read = med([r["stream"]["read_gbs"] for r in cruns if "stream" in r])
    stream_triad = med([r["stream"]["triad_gbs"] for r in cruns if "stream" in r])

    # ---- headlines (value, where)
    def worst(items, fn, better="lower"):
        best = None
        for it in items:
            v = fn(it)
            if v is None:
                continue
            if best is None or (v > best[0] if better == "lower" else v < best[0]):
                best = (v, it)
        return best

    H = {}
    bal = [r for r in rows if r["factor"] == "f-1" and r["w2"] in ("r8", "r16")
           and (r["rows"], r["distinct"]) == (64, 64)]
    H["overhead_64x64_balanced"] = worst(bal, lambda r: r["ratio"])
    unb = [r for r in rows if r["factor"] in ("f4", "unb4") and r["w2"] in ("r8", "r16")
           and (r["rows"], r["distinct"]) == (64, 64)]
    H["overhead_64x64_unbalanced"] = worst(unb, lambda r: r["ratio"])
    H["floor_ratio_worst"] = worst(rows, lambda r: r["floor_ratio"])

    def dvs(r):
        cs = grid.get((r["shape"], r["factor"], r["w2"], 64, 1))
        c64 = grid.get(key(r))
        if not cs or not c64:
            return None
        # per run: (64 distinct / base) / (1 adapter / base), both vs the base
        # measured back to back, so drift cancels
        v = [x["ratio"] / y["ratio"] for x, y in zip(c64, cs)]
        return med(v)
    H["distinct_vs_single"] = worst(bal, dvs)
    brows = [dict(shape=k[0], rows=k[1], ratio=med([b["ratio"] for b in v]),
                  openblas_us=med([b["openblas_us"] for b in v]),
                  lokrd_us=med([b["lokrd_us"] for b in v])) for k, v in base.items()]
    H["base_vs_openblas"] = worst(brows, lambda r: r["ratio"])
    H["factored_vs_materialize"] = worst(
        [r for r in rows if r.get("merge_over_lokrd") is not None],
        lambda r: r["merge_over_lokrd"], "higher")
    tb = [r for r in rows if r["shape"] == "1280x1280" and r["factor"] == "f-1"
          and r["w2"] == "r8" and (r["rows"], r["distinct"]) == (64, 64)
          and r.get("lokrd_over_torch_bypass")]
    H["factored_vs_torch_bypass"] = (1.0 / tb[0]["lokrd_over_torch_bypass"], tb[0]) if tb else None
    drows = [dict(shape=k[0], axis=k[1], rows=k[2], distinct=k[3],
                  ratio=med([d["ratio"] for d in v]), lokr_us=med([d["lokr_us"] for d in v]),
                  dora_us=med([d["dora_us"] for d in v])) for k, v in dora.items()]
    H["dora_vs_lokr"] = worst([d for d in drows if d["axis"] == "out"], lambda d: d["ratio"])
    vrows = [dict(shape=k, ratio=med([d["ratio"] for d in v]),
                  vector_us=med([d["vector_us"] for d in v]),
                  read_us=med([d["read_us"] for d in v])) for k, v in dvec.items()]
    H["dora_vector_vs_read"] = worst(vrows, lambda d: d["ratio"])

    def where(name, it):
        if it is None:
            return ""
        if name in ("base_vs_openblas",):
            return "%s, %d rows" % (it["shape"], it["rows"])
        if name in ("dora_vs_lokr",):
            return "%s, %d rows x %d adapters" % (it["shape"], it["rows"], it["distinct"])
        if name == "dora_vector_vs_read":
            return it["shape"]
        return "%s %s W2 %s, %d rows x %d adapters" % (it["shape"], it["factor"], it["w2"],
                                                      it["rows"], it["distinct"])

    results = []
    print("\n== headline targets (%d C run(s), %d torch run(s); medians of per-run ratios) =="
          % (len(cruns), len(truns)))
    print("%-27s %9s %7s %-6s %s" % ("target", "value", "goal", "met", "worst case"))
    for name, goal, better, what in TARGETS:
        h = H.get(name)
        if h is None:
            print("%-27s %9s %7.2f %-6s %s" % (name, "n/a", goal, "-", "(not measured)"))
            continue
        v = h[0]
        met = v <= goal if better == "lower" else v >= goal
        results.append({"name": name, "value": round(v, 4), "goal": goal, "better": better,
                        "met": bool(met), "where": where(name, h[1]), "what": what})
        print("%-27s %9.3f %7.2f %-6s %s" % (name, v, goal, "yes" if met else "NO",
                                            where(name, h[1])))
    os.makedirs(os.path.dirname(os.path.abspath(a.results)), exist_ok=True)
    with open(a.results, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print("wrote %s" % a.results)

    # side-by-side torch ratios
    trows = [r for r in rows if r.get("lokrd_over_torch_bypass")]
    if trows:
        print("\n== lokrd / PyTorch peer (same threads; < 1: lokrd faster) ==")
        print("%-10s %-5s %-4s %3s %3s %10s %12s %12s %9s %9s" % (
            "shape", "fac", "W2", "R", "D", "lokrd_us", "t_mat_us", "t_bypass_us", "/mat",
            "/bypass"))
        for r in sorted(trows, key=lambda r: (r["out"] * r["in"], r["factor"], r["w2"],
                                              r["rows"], r["distinct"])):
            print("%-10s %-5s %-4s %3d %3d %10.1f %12s %12.1f %9s %9.3f" % (
                r["shape"], r["factor"], r["w2"], r["rows"], r["distinct"], r["lokrd_us"],
                fmt(r["torch_materialize_us"], "%.1f"), r["torch_bypass_us"],
                fmt(r["lokrd_over_torch_materialize"], "%.3f"), r["lokrd_over_torch_bypass"]))

    if a.readme:
        write_readme(a, cruns, truns, rows, brows, drows, vrows, results, stream_read,
                     stream_triad)
    return 0


def write_readme(a, cruns, truns, rows, brows, drows, vrows, results, sread, striad):
    c0 = cruns[0]
    pd = a.plot_dir or os.path.dirname(os.path.abspath(a.readme))
    shapes = ["320x320", "640x640", "1280x1280", "320x768", "1280x2048", "10240x1280"]
    order = {s: i for i, s in enumerate(shapes)}
    facs = ["f-1", "f16", "f8", "f4", "unb4"]
    # plot data: ratio at 64 rows x 64 adapters and 64 x 1, per shape/factor/W2
    import tempfile
    datdir = tempfile.mkdtemp(prefix="lokr-bench-")
    dat = os.path.join(datdir, "overhead.dat")
    labels = []
    with open(dat, "w") as f:
        f.write("# idx label ratio_64x1 ratio_64x64 floor_64x64\n")
        i = 0
        for s in shapes:
            for fc in facs:
                for w in ("r8", "r16", "full"):
                    r1 = [r for r in rows if (r["shape"], r["factor"], r["w2"], r["rows"],
                                              r["distinct"]) == (s, fc, w, 64, 1)]
                    r64 = [r for r in rows if (r["shape"], r["factor"], r["w2"], r["rows"],
                                               r["distinct"]) == (s, fc, w, 64, 64)]
                    if not r64:
                        continue
                    lab = "%s %s %s" % (s, fc, w)
                    f.write("%d \"%s\" %.4f %.4f %.4f\n" % (
                        i, lab, r1[0]["ratio"] if r1 else float("nan"), r64[0]["ratio"],
                        r64[0]["floor_ratio"]))
                    labels.append(lab)
                    i += 1
    png = os.path.join(pd, "overhead.png")
    gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.gp")
    plotted = False
    if os.path.exists(gp) and labels:
        try:
            subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s'; n=%d" % (
                dat, png, len(labels)), gp], check=True)
            plotted = True
        except (OSError, subprocess.CalledProcessError) as e:
            print("plot: gnuplot failed: %s" % e, file=sys.stderr)
    os.remove(dat)
    os.rmdir(datdir)

    L = []
    L.append("# lokrd benchmarks")
    L.append("")
    L.append("Generated by `%s` from a build directory (`make` builds bench/lokr_bench; "
             "`make check` never runs it). Everything above the notes marker is regenerated." %
             a.command)
    L.append("")
    L.append("- `bench/run --quick`: 320x320 and 1280x1280, factors -1 / 4 / unbalanced 4, "
             "under a minute; `bench/run`: every shape, factor choice (-1, 16, 8, 4, "
             "unbalanced 4), W2 form (r8, r16, full) and batch (rows x distinct adapters: "
             "1x1, 8x1, 8x8, 64x1, 64x8, 64x64). Both write bench/results.json in the build "
             "directory; `--readme` rewrites this file and overhead.png; `--threads T` runs "
             "OpenBLAS and torch with T threads (wall clock).")
    L.append("- W2 low-rank forms are generated only where LyCORIS would store them "
             "(r < max(m2, n2)/2); otherwise the configuration is the full one.")
    L.append("")
    L.append("- CPU: %s, %s" % (c0.get("cpu"), "OpenBLAS core type **%s**" % c0.get("corename")))
    L.append("- OpenBLAS: `%s`, %d thread(s); clock: %s" % (
        c0.get("blas_config"), c0.get("threads"), c0.get("clock")))
    if truns:
        L.append("- PyTorch %s, %d thread(s), same OpenBLAS" % (truns[0].get("torch"),
                                                                 truns[0].get("threads")))
    L.append("- STREAM in the same run: read %.1f GB/s, triad %.1f GB/s (median of runs)" % (
        sread or 0, striad or 0))
    L.append("- %d C run(s) and %d torch run(s), alternating; each ratio is formed inside a run "
             "(interleaved samples, median), then the median over runs is shown." % (
                 len(cruns), len(truns)))
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | value | goal | met | worst case | definition |")
    L.append("|---|---|---|---|---|---|")
    for r in results:
        L.append("| %s | %.3f | %s %.2f | %s | %s | %s |" % (
            r["name"], r["value"], "≤" if r["better"] == "lower" else "≥", r["goal"],
            "yes" if r["met"] else "**no**", r["where"], r["what"]))
    L.append("")
    if plotted:
        L.append("## Overhead over the base GEMM, 64 rows")
        L.append("")
        L.append("![lokrd time / base sgemm, 64 rows with 1 or 64 adapters, and time / floor]"
                 "(overhead.png)")
        L.append("")
    L.append("## Grid: lokrd vs raw OpenBLAS base, MAC and bytes floors")
    L.append("")
    L.append("R rows split evenly over D distinct adapters (one request per adapter). plan: "
             "evaluation order A/B/S, then d = dense W2, f = low-rank factors kept, "
             "x = low-rank W2 expanded. floor = time / max(MAC floor, bytes floor). "
             "merge = merge-per-adapter time / lokrd time (8 x 8 only).")
    L.append("")
    L.append("| shape | factor | W2 | W1 ⊗ W2 | plan | R | D | base µs | lokrd µs | ratio | "
             "MAC floor µs | bytes floor µs | floor | merge |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (order.get(r["shape"], 99), facs.index(r["factor"]),
                                          ("r8", "r16", "full").index(r["w2"]), r["rows"],
                                          r["distinct"])):
        L.append("| %s | %s | %s | %dx%d ⊗ %dx%d | %s | %d | %d | %.1f | %.1f | %.3f | %.1f | "
                 "%.1f | %.3f | %s |" % (
                     r["shape"], r["factor"], r["w2"], r["m1"], r["n1"], r["m2"], r["n2"],
                     r["plan"], r["rows"], r["distinct"], r["base_us"], r["lokrd_us"],
                     r["ratio"], r["mac_floor_us"], r["bytes_floor_us"], r["floor_ratio"],
                     "%.2f" % r["merge_over_lokrd"] if r.get("merge_over_lokrd") else ""))
    L.append("")
    L.append("## Base path: lokr_exec with empty adapter sets vs raw OpenBLAS")
    L.append("")
    L.append("| shape | rows | OpenBLAS µs | lokrd µs | ratio |")
    L.append("|---|---|---|---|---|")
    for b in sorted(brows, key=lambda b: (order.get(b["shape"], 99), b["rows"])):
        L.append("| %s | %d | %.1f | %.1f | %.3f |" % (b["shape"], b["rows"], b["openblas_us"],
                                                      b["lokrd_us"], b["ratio"]))
    L.append("")
    L.append("## DoRA")
    L.append("")
    L.append("| shape | axis | R | D | LoKr µs | LoKr+DoRA µs | ratio |")
    L.append("|---|---|---|---|---|---|---|")
    for d in sorted(drows, key=lambda d: (order.get(d["shape"], 99), d["axis"] != "out",
                                          d["rows"], d["distinct"])):
        L.append("| %s | %s | %d | %d | %.1f | %.1f | %.3f |" % (
            d["shape"], d["axis"], d["rows"], d["distinct"], d["lokr_us"], d["dora_us"],
            d["ratio"]))
    L.append("")
    L.append("| shape | DoRA vector µs | one W0 read at STREAM µs | ratio |")
    L.append("|---|---|---|---|")
    for v in sorted(vrows, key=lambda v: order.get(v["shape"], 99)):
        L.append("| %s | %.1f | %.1f | %.3f |" % (v["shape"], v["vector_us"], v["read_us"],
                                                 v["ratio"]))
    L.append("")
    trows = [r for r in rows if r.get("lokrd_over_torch_bypass")]
    if trows:
        L.append("## lokrd ÷ PyTorch peers (< 1: lokrd faster)")
        L.append("")
        L.append("materialize = PEFT/ComfyUI (kron built per adapter, then F.linear); bypass = "
                 "LyCORIS fixed-order bypass per request (mv + W2 then W1).")
        L.append("")
        L.append("| shape | factor | W2 | R | D | lokrd µs | torch materialize µs | "
                 "torch bypass µs | lokrd/materialize | lokrd/bypass |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in sorted(trows, key=lambda r: (order.get(r["shape"], 99), r["factor"], r["w2"],
                                              r["rows"], r["distinct"])):
            L.append("| %s | %s | %s | %d | %d | %.1f | %s | %.1f | %s | %.3f |" % (
                r["shape"], r["factor"], r["w2"], r["rows"], r["distinct"], r["lokrd_us"],
                fmt(r["torch_materialize_us"], "%.1f"), r["torch_bypass_us"],
                fmt(r["lokrd_over_torch_materialize"], "%.3f"), r["lokrd_over_torch_bypass"]))
        L.append("")
    # hand-written notes below the marker survive regeneration
    marker = "<!-- hand-written notes below are kept by bench/aggregate.py -->"
    tail = marker + "\n"
    try:
        old = open(a.readme).read()
        if marker in old:
            tail = old[old.index(marker):]
    except OSError:
        pass
    with open(a.readme, "w") as f:
        f.write("\n".join(L) + "\n" + tail)
    print("wrote %s" % a.readme)


if __name__ == "__main__":
    sys.exit(main())
