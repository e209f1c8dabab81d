#!/usr/bin/python3
"""make_cases.py - independent reference for lokrd's adapter math, and the
generator of the conformance data in tests/data/gen/.

Everything here is written from ../shared/lycoris-format.md ("lokrd's
decisions", sections 3, 5, 6 and 9), not from the C library: it is the
second opinion the C code is checked against.  It needs python3 and numpy
only (Debian's python3-numpy); the safetensors reader and writer are the few
lines below.  All math runs in float64 on the values decoded from the files
this script wrote, so F16/BF16 cases are computed from the stored, rounded
values.

    tests/gen/make_cases.py              regenerate tests/data/gen/
    tests/gen/make_cases.py --selfcheck  rebuild the public LyCORIS fixtures
                                         (tests/data/fixtures) from their
                                         adapter files and report the errors

Output (committed, so `make check` never needs numpy):
    tests/data/gen/adapters/<case>.safetensors   LyCORIS-style adapters
    tests/data/gen/expected/<case>.safetensors   per touched layer:
        <layer>.merged, .merged_m0.5 (and _m0, _m-1, _m2 for sweeps),
        .x, .y (multiplier 1), .y_m0.5; for adapter sets .merged_set, .y_set
    tests/data/gen/bad/<case>.safetensors        adapters every loader must reject
    tests/data/gen/cases.json                    the manifest the C runner reads
"""

import argparse
import json
import math
import os
import struct
import sys
import zlib

import numpy as np

SEED = 20251205
EPS_DORA = 2.0 ** -23
TARGET_REL = 0.3  # |s dW| / |W0| of generated adapters, like the fixtures

# ------------------------------------------------------------------ safetensors

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def f32_to_bf16_bits(a):
    """Round float32 values to bfloat16 (nearest even), as uint16 bits."""
    b = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = 0x7FC0
    return r


def encode(arr, dtype):
    a = np.asarray(arr, dtype=np.float64)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        with np.errstate(over="ignore"):
            return a.astype("<f2").tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(a.astype(np.float32)).astype("<u2").tobytes()
    if dtype == "F64":
        return a.astype("<f8").tobytes()
    raise ValueError(dtype)


def decode(dtype, shape, raw):
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        a = np.frombuffer(raw, dtype="<f2")
    elif dtype == "BF16":
        a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype == "F64":
        a = np.frombuffer(raw, dtype="<f8")
    else:
        raise ValueError("cannot decode " + dtype)
    return a.astype(np.float64).reshape(shape)


def st_read(path):
    """Returns ({name: (dtype, shape, raw bytes)}, metadata)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    hdr = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = hdr.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in hdr.items():
        b, en = e["data_offsets"]
        out[name] = (e["dtype"], tuple(e["shape"]), buf[base + b:base + en])
    return out, meta


def st_floats(path):
    t, _ = st_read(path)
    return {k: decode(*v) for k, v in t.items()}


def st_write(path, tensors, meta=None):
    """tensors: {name: (dtype, shape, raw)}.  The reference writer's layout:
    sorted by alignment descending then name, header padded with spaces to
    a multiple of 8."""
    names = sorted(tensors, key=lambda k: (-DTYPE_SIZE[tensors[k][0]], k))
    hdr = {}
    if meta:
        hdr["__metadata__"] = meta
    off = 0
    for k in names:
        dt, shape, raw = tensors[k]
        nel = int(np.prod(shape)) if len(shape) else 1
        assert len(raw) == nel * DTYPE_SIZE[dt], (k, len(raw), shape, dt)
        hdr[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for k in names:
            f.write(tensors[k][2])
    os.replace(path + ".tmp", path)


def f32_tensor(a):
    a = np.asarray(a)
    return ("F32", a.shape, a.astype("<f4").tobytes())


# ------------------------------------------------------------------ base model


class Layer:
    def __init__(self, name, w, b):
        self.name = name
        self.w = w  # float64, file shape
        self.b = b  # float64 (out,) or None
        self.shape = w.shape
        self.out = w.shape[0]
        self.inn = w.shape[1]
        self.kernel = tuple(w.shape[2:])
        self.kk = int(np.prod(self.kernel)) if self.kernel else 1
        self.conv = len(w.shape) > 2
        self.module = "lycoris_" + name.replace(".", "_")

    def flat(self):
        return self.w.reshape(self.out, self.inn * self.kk)


def load_base(path):
    t = st_floats(path)
    layers = {}
    for k in t:
        if k.endswith(".weight") and t[k].ndim in (2, 4):
            n = k[: -len(".weight")]
            layers[n] = Layer(n, t[k], t.get(n + ".bias"))
    return layers, t


# ------------------------------------------------------------------ the reference math


class Reject(Exception):
    """An adapter that lokrd must refuse; .module names the culprit."""

    def __init__(self, module, msg):
        super().__init__(module + ": " + msg)
        self.module = module


def tucker(t, wa, wb):
    """R[p,q,k] = sum_{a,b} t[a,b,k] wa[a,p] wb[b,q] (lycoris-format.md 3.2)."""
    r1, r2 = t.shape[0], t.shape[1]
    tk = t.reshape(r1, r2, -1)
    return np.einsum("abk,ap,bq->pqk", tk, wa, wb)


KNOWN = {
    "lokr": {"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"},
    "loha": {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"},
    "lora": {"lora_up.weight", "lora_down.weight", "lora_mid.weight"},
}
COMMON = {"alpha", "dora_scale"}


def detect_algo(mod, p):
    if "lora_up.weight" in p:
        return "lora"
    if "hada_w1_a" in p:
        return "loha"
    if "lokr_w1" in p or "lokr_w1_a" in p:
        return "lokr"
    raise Reject(mod, "no supported algorithm among keys %s" % sorted(p))


def alpha_value(mod, p):
    if "alpha" not in p:
        return None
    a = p["alpha"]
    if a.size != 1:
        raise Reject(mod, "alpha of shape %s" % (a.shape,))
    return float(a.reshape(-1)[0])


def scale_from(mod, alpha, rank):
    """s = alpha / rank; alpha 0 or absent -> 1; a used non-finite alpha rejects."""
    if alpha is None:
        return 1.0
    if not math.isfinite(alpha):
        raise Reject(mod, "non-finite alpha %r" % alpha)
    if alpha == 0.0:
        return 1.0
    return alpha / rank


def module_delta(mod, p, L):
    """Returns (algo, s, dW) with dW the raw delta flat (out, in*kk), before s.
    Raises Reject for everything lycoris-format.md 9.23 lists."""
    algo = detect_algo(mod, p)
    for k in p:
        if k not in KNOWN[algo] and k not in COMMON:
            raise Reject(mod, "unknown key " + k)
    for k, v in p.items():
        if k != "alpha" and not np.all(np.isfinite(v)):
            raise Reject(mod, "non-finite values in " + k)
    out, inn, kk = L.out, L.inn, L.kk
    alpha = alpha_value(mod, p)

    def need(*ks):
        for k in ks:
            if k not in p:
                raise Reject(mod, "missing " + k)

    if algo == "lokr":
        if "lokr_w1" in p and ("lokr_w1_a" in p or "lokr_w1_b" in p):
            raise Reject(mod, "lokr_w1 together with lokr_w1_a/b")
        if "lokr_w2" in p and ("lokr_w2_a" in p or "lokr_w2_b" in p or "lokr_t2" in p):
            raise Reject(mod, "lokr_w2 together with lokr_w2_a/b")
        ranks = []
        if "lokr_w1" in p:
            W1 = p["lokr_w1"]
            if W1.ndim != 2:
                raise Reject(mod, "lokr_w1 not 2-D")
        else:
            need("lokr_w1_a", "lokr_w1_b")
            a, b = p["lokr_w1_a"], p["lokr_w1_b"]
            if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
                raise Reject(mod, "w1 rank mismatch %s %s" % (a.shape, b.shape))
            W1 = a @ b
            ranks.append(b.shape[0])
        m1, n1 = W1.shape
        if "lokr_w2" in p:
            w2 = p["lokr_w2"]
            if w2.ndim != (4 if L.conv else 2) or (L.conv and tuple(w2.shape[2:]) != L.kernel):
                raise Reject(mod, "lokr_w2 %s on %s" % (w2.shape, L.shape))
            m2, n2 = w2.shape[0], w2.shape[1]
            W2 = w2.reshape(m2, n2 * kk)
        else:
            need("lokr_w2_a", "lokr_w2_b")
            a, b = p["lokr_w2_a"], p["lokr_w2_b"]
            if "lokr_t2" in p:
                t = p["lokr_t2"]
                if not L.conv:
                    raise Reject(mod, "lokr_t2 on a linear layer")
                if tuple(t.shape[2:]) != L.kernel:
                    raise Reject(mod, "lokr_t2 kernel %s, base %s" % (t.shape, L.shape))
                if a.ndim != 2 or b.ndim != 2 or not (
                    t.shape[0] == t.shape[1] == a.shape[0] == b.shape[0]
                ):
                    raise Reject(mod, "tucker rank mismatch")
                m2, n2 = a.shape[1], b.shape[1]
                W2 = tucker(t, a, b).reshape(m2, n2 * kk)
            else:
                bf = b.reshape(b.shape[0], -1)
                if a.ndim != 2 or a.shape[1] != b.shape[0]:
                    raise Reject(mod, "w2 rank mismatch %s %s" % (a.shape, b.shape))
                if bf.shape[1] % kk:
                    raise Reject(mod, "w2_b columns %d not divisible by kk %d" % (bf.shape[1], kk))
                m2, n2 = a.shape[0], bf.shape[1] // kk
                W2 = a @ bf
            ranks.append(b.shape[0])
        if len(set(ranks)) > 1:
            raise Reject(mod, "ranks disagree %s" % ranks)
        if m1 * m2 != out or n1 * n2 != inn:
            raise Reject(mod, "(%d,%d) x (%d,%d) does not give %s" % (m1, n1, m2, n2, L.shape))
        s = 1.0 if not ranks else scale_from(mod, alpha, ranks[0])
        dW = np.kron(W1, W2)
    elif algo == "loha":
        need("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        w1a, w1b, w2a, w2b = (p[k] for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
        if "hada_t1" in p or "hada_t2" in p:
            need("hada_t1", "hada_t2")
            if not L.conv:
                raise Reject(mod, "hada_t on a linear layer")
            for t in (p["hada_t1"], p["hada_t2"]):
                if tuple(t.shape[2:]) != L.kernel:
                    raise Reject(mod, "hada_t kernel mismatch")
            R1 = tucker(p["hada_t1"], w1a, w1b)
            R2 = tucker(p["hada_t2"], w2a, w2b)
            if R1.shape != (out, inn, kk) or R2.shape != R1.shape:
                raise Reject(mod, "loha tucker shape mismatch")
            dW = (R1 * R2).reshape(out, inn * kk)
        else:
            w1bf, w2bf = w1b.reshape(w1b.shape[0], -1), w2b.reshape(w2b.shape[0], -1)
            if w1a.shape[1] != w1bf.shape[0] or w2a.shape[1] != w2bf.shape[0]:
                raise Reject(mod, "loha rank mismatch")
            if w1a.shape[1] != w2a.shape[1]:
                raise Reject(mod, "loha ranks disagree")
            A, B = w1a @ w1bf, w2a @ w2bf
            if A.shape != (out, inn * kk) or B.shape != A.shape:
                raise Reject(mod, "loha shape %s on %s" % (A.shape, L.shape))
            dW = A * B
        s = scale_from(mod, alpha, w1b.shape[0])
    else:
        need("lora_up.weight", "lora_down.weight")
        up, down = p["lora_up.weight"], p["lora_down.weight"]
        r = down.shape[0]
        upf = up.reshape(up.shape[0], -1)
        if upf.shape[1] != r:
            raise Reject(mod, "lora rank mismatch")
        if "lora_mid.weight" in p:
            mid = p["lora_mid.weight"]
            if not L.conv or tuple(mid.shape[2:]) != L.kernel:
                raise Reject(mod, "lora_mid kernel mismatch")
            dW = np.einsum("oa,abk,bc->ock", upf, mid.reshape(r, r, -1), down.reshape(r, -1))
            if dW.shape != (out, inn, kk):
                raise Reject(mod, "lora shape mismatch")
            dW = dW.reshape(out, inn * kk)
        else:
            dW = upf @ down.reshape(r, -1)
            if dW.shape != (out, inn * kk):
                raise Reject(mod, "lora shape %s on %s" % (dW.shape, L.shape))
        s = scale_from(mod, alpha, r)
    return algo, s, dW


def dora_axis(mod, d, L):
    sh = d.shape
    if len(sh) == 1:
        if sh[0] == L.out:
            return "out"
    elif sh[0] == L.out and all(x == 1 for x in sh[1:]):
        return "out"
    elif len(sh) >= 2 and sh[0] == 1 and sh[1] == L.inn and all(x == 1 for x in sh[2:]):
        return "in"
    raise Reject(mod, "dora_scale shape %s fits neither axis of %s" % (sh, L.shape))


def dora_g(V, d, axis, L):
    """g = dora_scale / (|V| + 2^-23) along the axis; returns a (out,in*kk) broadcastable array."""
    if axis == "out":
        n = np.sqrt((V * V).sum(axis=1)) + EPS_DORA
        return (d.reshape(-1) / n)[:, None]
    V3 = V.reshape(L.out, L.inn, L.kk)
    n = np.sqrt((V3 * V3).sum(axis=(0, 2))) + EPS_DORA
    g = d.reshape(-1) / n
    return np.repeat(g, L.kk)[None, :]


class Module:
    def __init__(self, name, params, L):
        self.name, self.p, self.L = name, params, L
        self.algo, self.s, self.dW = module_delta(name, params, L)
        self.dora = None
        if "dora_scale" in params:
            self.dora = dora_axis(name, params["dora_scale"], L)
            V = L.flat() + self.s * self.dW
            self.g = dora_g(V, params["dora_scale"], self.dora, L)
            self.V = V

    def merged(self, lam):
        """lokrd's rule: W0 + lam s dW, or with DoRA W0 + lam (g V - W0)."""
        W0 = self.L.flat()
        if self.dora is None:
            return W0 + lam * self.s * self.dW
        return W0 + lam * (self.g * self.V - W0)

    def merged_lycoris(self, lam):
        """LyCORIS f49d30d's rule (only for --selfcheck): DoRA f = lam(g-1)+1, W' = f V."""
        if self.dora is None:
            return self.merged(lam)
        return (lam * (self.g - 1.0) + 1.0) * self.V


def load_adapter(path, layers):
    """Parse an adapter file into {layer name: Module} (all or nothing)."""
    t = st_floats(path)
    if not t:
        raise Reject("", "no modules")
    bymod = {}
    for k, v in t.items():
        mod, _, param = k.partition(".")
        bymod.setdefault(mod, {})[param] = v
    bylayer = {}
    for mod, p in bymod.items():
        hits = [l for l in layers.values() if l.module == mod]
        if not hits:
            raise Reject(mod, "maps to no base layer")
        if len(hits) > 1:
            raise Reject(mod, "maps to two layers %s" % [l.name for l in hits])
        bylayer[hits[0].name] = Module(mod, p, hits[0])
    return bylayer


def merged_set(L, mods_lams):
    """W0 + sum_a (W'_a - W0), every W'_a taken against the untouched W0."""
    W0 = L.flat()
    acc = W0.copy()
    for m, lam in mods_lams:
        acc += m.merged(lam) - W0
    return acc


def forward(L, Wflat, x, stride=1, padding=None, dilation=1):
    """y = layer(x) with weight Wflat and the base bias; conv: zero padding
    (default k//2), stride, dilation, the same in both dims."""
    b = L.b if L.b is not None else np.zeros(L.out)
    if not L.conv:
        return x @ Wflat.T + b
    kh, kw = L.kernel
    ph, pw = (kh // 2, kw // 2) if padding is None else (padding, padding)
    n, c, h, w = x.shape
    ho = (h + 2 * ph - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pw - dilation * (kw - 1) - 1) // stride + 1
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    cols = np.empty((n, c, kh, kw, ho, wo))
    for p in range(kh):
        for q in range(kw):
            r0, c0 = p * dilation, q * dilation
            cols[:, :, p, q] = xp[:, :, r0:r0 + stride * (ho - 1) + 1:stride,
                                  c0:c0 + stride * (wo - 1) + 1:stride]
    cols = cols.reshape(n, c * kh * kw, ho * wo)
    y = np.einsum("ok,nkp->nop", Wflat, cols).reshape(n, L.out, ho, wo)
    return y + b[None, :, None, None]


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mb = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / (mb if mb > 0 else 1.0))


# ------------------------------------------------------------------ adapter builders


def rng_for(name):
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def lokr_params(rng, L, m1, n1, m2, n2, w1="full", w2="full", rank=4, w2b_4d=False):
    """On-disk LoKr tensors (float64, before the save cast).  w1: full|lr;
    w2: full|lr|tucker."""
    assert m1 * m2 == L.out and n1 * n2 == L.inn, (L.name, m1, n1, m2, n2)
    p = {}
    r = rank
    if w1 == "full":
        p["lokr_w1"] = rng.standard_normal((m1, n1))
    else:
        p["lokr_w1_a"] = rng.standard_normal((m1, r))
        p["lokr_w1_b"] = rng.standard_normal((r, n1))
    if w2 == "full":
        shape = (m2, n2) + L.kernel
        p["lokr_w2"] = rng.standard_normal(shape)
    elif w2 == "lr":
        p["lokr_w2_a"] = rng.standard_normal((m2, r))
        b = rng.standard_normal((r, n2 * L.kk))
        p["lokr_w2_b"] = b.reshape((r, n2) + L.kernel) if w2b_4d else b
    else:
        assert L.conv
        p["lokr_t2"] = rng.standard_normal((r, r) + L.kernel)
        p["lokr_w2_a"] = rng.standard_normal((r, m2))
        p["lokr_w2_b"] = rng.standard_normal((r, n2))
    return p, ("lokr_w1" if w1 == "full" else "lokr_w1_a")


def loha_params(rng, L, rank=4, use_tucker=False):
    r = rank
    p = {}
    for i in ("1", "2"):
        if use_tucker:
            p["hada_t" + i] = rng.standard_normal((r, r) + L.kernel)
            p["hada_w%s_a" % i] = rng.standard_normal((r, L.out))
            p["hada_w%s_b" % i] = rng.standard_normal((r, L.inn))
        else:
            p["hada_w%s_a" % i] = rng.standard_normal((L.out, r))
            p["hada_w%s_b" % i] = rng.standard_normal((r, L.inn * L.kk))
    return p, "hada_w1_a"


def lora_params(rng, L, rank=4, use_tucker=False):
    r = rank
    p = {}
    if not L.conv:
        p["lora_down.weight"] = rng.standard_normal((r, L.inn))
        p["lora_up.weight"] = rng.standard_normal((L.out, r))
    elif use_tucker:
        p["lora_down.weight"] = rng.standard_normal((r, L.inn, 1, 1))
        p["lora_mid.weight"] = rng.standard_normal((r, r) + L.kernel)
        p["lora_up.weight"] = rng.standard_normal((L.out, r, 1, 1))
    else:
        p["lora_down.weight"] = rng.standard_normal((r, L.inn) + L.kernel)
        p["lora_up.weight"] = rng.standard_normal((L.out, r, 1, 1))
    return p, "lora_up.weight"


def normalise(p, knob, L, alpha, target=TARGET_REL):
    """Scale the tensor `knob` so that |s dW| / |W0| == target."""
    q = dict(p)
    if alpha is not None:
        q["alpha"] = np.array(alpha if math.isfinite(alpha) else 1.0)
    try:
        _, s, dW = module_delta("x", q, L)
    except Reject:
        s, dW = 1.0, module_delta("x", {k: v for k, v in q.items() if k != "alpha"}, L)[2]
    ratio = np.linalg.norm(s * dW) / np.linalg.norm(L.w)
    p[knob] = p[knob] * (target / ratio)
    return p


def dora_for(rng, L, axis, one_d=False):
    W = L.w.reshape(L.out, L.inn, L.kk)
    if axis == "out":
        n = np.sqrt((W * W).sum(axis=(1, 2)))
        d = n * (1.0 + 0.15 * rng.standard_normal(L.out))
        if one_d:
            return d
        return d.reshape((L.out,) + (1,) * (len(L.shape) - 1))
    n = np.sqrt((W * W).sum(axis=(0, 2)))
    d = n * (1.0 + 0.15 * rng.standard_normal(L.inn))
    return d.reshape((1, L.inn) + (1,) * (len(L.shape) - 2))


# A module spec: (layer, builder name, builder kwargs, alpha, extras)
def build_module(rng, L, spec):
    kind = spec["algo"]
    alpha = spec.get("alpha", "rank")
    if kind == "lokr":
        p, knob = lokr_params(rng, L, *spec["split"], w1=spec.get("w1", "full"),
                              w2=spec.get("w2", "lr"), rank=spec.get("rank", 4),
                              w2b_4d=spec.get("w2b_4d", False))
    elif kind == "loha":
        p, knob = loha_params(rng, L, rank=spec.get("rank", 4), use_tucker=spec.get("tucker", False))
    else:
        p, knob = lora_params(rng, L, rank=spec.get("rank", 4), use_tucker=spec.get("tucker", False))
    if alpha == "rank":
        alpha = float(spec.get("rank", 4))
    p = normalise(p, knob, L, alpha, spec.get("target", TARGET_REL))
    if alpha is not None:
        p["alpha"] = np.array(alpha) if not spec.get("alpha_shape1") else np.array([alpha])
    if spec.get("dora"):
        p["dora_scale"] = dora_for(rng, L, spec["dora"], spec.get("dora_1d", False))
    return p


def module_tensors(L, params, dtype, prefix="lycoris"):
    mod = prefix + "_" + L.name.replace(".", "_")
    out = {}
    for k, v in params.items():
        out[mod + "." + k] = (dtype, tuple(np.shape(v)), encode(v, dtype))
    return out


# ------------------------------------------------------------------ the cases

Q, K, F, C = "down.attn.to_q", "down.attn.to_k", "down.ff.proj", "down.resnet.conv1"
P, O, R, S = "mid.proj", "mid.odd", "up.prime", "up.shortcut"

# Each case: name -> dict(desc, dtype, modules: {layer: spec}, sweep: bool,
# out_dtypes: [...]).  Splits are (m1, n1, m2, n2); conv n2 counts channels.
CASES = [
    ("lokr_factor4", "§9.2 factor 4: W1 4x4, low-rank W2, alpha 8 > rank 4 so s = 2", "F32", {
        F: dict(algo="lokr", split=(4, 4, 80, 20), alpha=8.0),
        C: dict(algo="lokr", split=(4, 4, 12, 8), alpha=8.0),
        S: dict(algo="lokr", split=(4, 4, 16, 8), rank=3, alpha=6.0)}),
    ("lokr_factor8", "§9.2 factor 8: W1 8x8 (5x6 on 100x60, 1x8 on the prime), s = 2", "F32", {
        F: dict(algo="lokr", split=(8, 8, 40, 10), alpha=8.0),
        O: dict(algo="lokr", split=(5, 6, 20, 10), alpha=8.0),
        R: dict(algo="lokr", split=(1, 8, 127, 16), alpha=8.0)}),
    ("lokr_unbalanced_factorization_f4", "§9.3 unbalanced: W1 (40,4) x W2 (4,48); (127,4) x (1,32)", "F32", {
        K: dict(algo="lokr", split=(40, 4, 4, 48), alpha=2.0),
        R: dict(algo="lokr", split=(127, 4, 1, 32), alpha=2.0),
        S: dict(algo="lokr", split=(16, 4, 4, 8), rank=3, alpha=1.5)}),
    ("lokr_decompose_both", "§9.4 W1 low-rank (rank from w1_b), W2 low-rank", "F32", {
        O: dict(algo="lokr", split=(10, 6, 10, 10), w1="lr", rank=2, alpha=2.0),
        P: dict(algo="lokr", split=(8, 8, 12, 8), w1="lr", rank=2, alpha=3.0),
        C: dict(algo="lokr", split=(6, 4, 8, 8), w1="lr", rank=2, alpha=1.0)}),
    ("lokr_unbalanced_decompose_both", "§9.5 W1 low-rank with W2 full (s = alpha/rank of W1)", "F32", {
        O: dict(algo="lokr", split=(25, 4, 4, 15), w1="lr", w2="full", rank=8, alpha=4.0),
        P: dict(algo="lokr", split=(24, 4, 4, 16), w1="lr", w2="full", rank=8, alpha=16.0),
        S: dict(algo="lokr", split=(16, 4, 4, 8), w1="lr", w2="full", rank=4, alpha=2.0)}),
    ("lokr_full_matrix_bf16", "§9.6/§9.21 both full, alpha 1e10 stored as BF16: s = 1", "BF16", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), w2="full", alpha=1e10),
        C: dict(algo="lokr", split=(6, 4, 8, 8), w2="full", alpha=1e10),
        S: dict(algo="lokr", split=(8, 4, 8, 8), w2="full", alpha=1e10)}),
    ("lokr_full_matrix_f16_inf", "§9.21 both full, alpha +inf in an F16 file: s = 1, finite output", "F16", {
        O: dict(algo="lokr", split=(10, 6, 10, 10), w2="full", alpha=float("inf")),
        S: dict(algo="lokr", split=(8, 4, 8, 8), w2="full", alpha=float("inf"))}),
    ("lokr_full_matrix_nan_alpha", "both full, alpha NaN: unused, so accepted with s = 1", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), w2="full", alpha=float("nan"))}),
    ("lokr_tucker", "§9.7 Tucker: 3x3 conv with t2 (r,r,3,3), w2_a (r,m2); 1x1 conv without t2", "F32", {
        C: dict(algo="lokr", split=(6, 4, 8, 8), w2="tucker", rank=3, alpha=1.5),
        S: dict(algo="lokr", split=(8, 4, 8, 8), w2="lr", rank=3, alpha=1.5)}),
    ("lokr_tucker_lowrank_w1", "Tucker W2 with low-rank W1 (ranks agree)", "F32", {
        C: dict(algo="lokr", split=(6, 4, 8, 8), w1="lr", w2="tucker", rank=2, alpha=1.0)}),
    ("lokr_dora", "§9.8 DoRA output axis: linear, conv, both-full conv", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=2.0, dora="out"),
        C: dict(algo="lokr", split=(6, 4, 8, 8), rank=3, alpha=1.5, dora="out"),
        S: dict(algo="lokr", split=(8, 4, 8, 8), w2="full", alpha=4.0, dora="out")}),
    ("lokr_dora_wd_on_input", "§9.9 DoRA input axis: (1,in) and (1,in,1,1)", "F32", {
        O: dict(algo="lokr", split=(10, 6, 10, 10), alpha=2.0, dora="in"),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=1.5, dora="in"),
        C: dict(algo="lokr", split=(6, 4, 8, 8), rank=3, alpha=1.5, dora="in")}),
    ("lokr_rs_lora", "§9.10 rs_lora: stored alpha = alpha*sqrt(r)", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), rank=3, alpha=2.0 * math.sqrt(3.0)),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=1.0 * math.sqrt(3.0)),
        O: dict(algo="loha", rank=4, alpha=2.0 * 2.0)}),
    ("lokr_use_scalar", "§9.11 use_scalar folded into lokr_w1 (nothing special on disk)", "F32", {
        O: dict(algo="lokr", split=(10, 6, 10, 10), alpha=2.0, target=0.05)}),
    ("lokr_fp16", "§9.12 F16 file, alpha F16 too; computed from the stored values", "F16", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=2.0),
        O: dict(algo="lokr", split=(10, 6, 10, 10), alpha=1.3),
        S: dict(algo="lokr", split=(8, 4, 8, 8), w2="full", alpha=4.0)}),
    ("lokr_bf16", "§9.12 BF16 file, alpha BF16 (1.3 -> 1.296875)", "BF16", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=2.0),
        O: dict(algo="lokr", split=(10, 6, 10, 10), alpha=1.3),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=1.3)}),
    ("loha", "§9.13 LoHa plain (linear and conv)", "F32", {
        O: dict(algo="loha", alpha=2.0),
        P: dict(algo="loha", rank=3, alpha=1.0),
        C: dict(algo="loha", rank=3, alpha=1.5),
        S: dict(algo="loha", alpha=2.0)}),
    ("loha_tucker", "§9.13 LoHa Tucker (hada_t1/t2, w_a (r,out))", "F32", {
        C: dict(algo="loha", rank=3, alpha=1.5, tucker=True),
        P: dict(algo="loha", alpha=2.0)}),
    ("loha_dora", "§9.13 DoHa, output axis linear and 1x1 conv", "F32", {
        O: dict(algo="loha", alpha=2.0, dora="out"),
        S: dict(algo="loha", rank=3, alpha=1.5, dora="out")}),
    ("lora", "§9.14 LoRA / LoCon (linear, 3x3 and 1x1 conv)", "F32", {
        O: dict(algo="lora", alpha=2.0),
        C: dict(algo="lora", rank=3, alpha=1.0),
        S: dict(algo="lora", alpha=2.0)}),
    ("locon_tucker", "§9.14 LoCon Tucker (lora_mid) on the 3x3 conv; 1x1 plain", "F32", {
        C: dict(algo="lora", rank=3, alpha=1.5, tucker=True),
        S: dict(algo="lora", rank=4, alpha=2.0)}),
    ("lora_dora", "§9.14 LoRA + DoRA, output axis, linear and 1x1 conv", "F32", {
        P: dict(algo="lora", alpha=2.0, dora="out"),
        S: dict(algo="lora", rank=3, alpha=1.5, dora="out")}),
    ("mixed_algo", "§9.15 LoKr, LoHa, LoRA in one file, per-module rank and alpha", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), rank=2, alpha=1.0),
        O: dict(algo="loha", rank=6, alpha=3.0),
        C: dict(algo="lokr", split=(6, 4, 8, 8), w2="tucker", rank=3, alpha=1.5),
        S: dict(algo="lora", rank=2, alpha=1.0, dora="out")}),
    ("lokr_subset", "§9.16 only two layers: every other tensor stays byte-identical", "F32", {
        O: dict(algo="lokr", split=(10, 6, 10, 10), alpha=2.0),
        S: dict(algo="lokr", split=(8, 4, 8, 8), w2="full", alpha=4.0)}),
    ("lokr_w2b_4d", "§9.22 functional-API layout: 4-D non-Tucker lokr_w2_b (r,n2,kh,kw)", "F32", {
        C: dict(algo="lokr", split=(6, 4, 8, 8), rank=3, alpha=1.5, w2b_4d=True),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=1.5, w2b_4d=True)}),
    ("lokr_alpha_shape1", "§9.22 alpha of shape [1]", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=3.0, alpha_shape1=True),
        S: dict(algo="lora", alpha=1.0, alpha_shape1=True)}),
    ("lokr_no_alpha", "§9.22 no alpha: s = 1 (with a warning)", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=None),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=None),
        O: dict(algo="loha", alpha=None)}),
    ("lokr_dora_1d", "§9.22 1-D dora_scale (out,) = output axis", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=2.0, dora="out", dora_1d=True),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=1.5, dora="out", dora_1d=True),
        O: dict(algo="lora", alpha=2.0, dora="out", dora_1d=True)}),
    ("lokr_peft_w1_larger", "§9.22 peft-style split, W1 larger than W2", "F32", {
        O: dict(algo="lokr", split=(50, 30, 2, 2), rank=1, alpha=1.0),
        S: dict(algo="lokr", split=(16, 8, 4, 4), rank=2, alpha=2.0),
        P: dict(algo="lokr", split=(24, 16, 4, 4), w1="lr", w2="full", rank=4, alpha=4.0)}),
    ("lokr_alpha_zero", "alpha = 0 means s = 1 (LyCORIS loader rule)", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=0.0),
        S: dict(algo="lora", alpha=0.0)}),
    ("lokr_lambda_sweep", "§9.18 LoKr at lambda 0, -1, 2 (linear in lambda)", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=2.0),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=1.5)}),
    ("dora_lambda_sweep", "§9.18 DoRA interpolation at lambda 0 (exactly W0), -1, 2", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=2.0, dora="out"),
        S: dict(algo="lokr", split=(8, 4, 8, 8), rank=3, alpha=1.5, dora="out"),
        O: dict(algo="lokr", split=(10, 6, 10, 10), alpha=2.0, dora="in")}),
    ("prefix_lora_unet", "module names with the kohya lora_unet_ prefix", "F32", {
        P: dict(algo="lokr", split=(8, 8, 12, 8), alpha=2.0, prefix="lora_unet")}),
]

SWEEP = {"lokr_lambda_sweep", "dora_lambda_sweep"}
# Cases whose conv layers are also applied with stride 2, padding 1, dilation 2 (§9.20).
STRIDED = {"lokr_tucker", "lokr_dora", "lokr_dora_wd_on_input", "lokr_w2b_4d", "loha_tucker",
           "locon_tucker", "lokr_decompose_both"}
CONV_S2P1D2 = {"stride": 2, "padding": 1, "dilation": 2}
# Cases whose merge is also run with --dtype f16 / bf16.
OUT_DTYPES = {"lokr_factor8": ["f16", "bf16"], "lokr_dora": ["f16", "bf16"], "loha": ["bf16"]}

# Adapter sets (§9.25): members are (case, multiplier); every member was
# generated above; the expected values use lokrd decision 3.
SETS = [
    ("set_plain", "LoKr + LoRA + LoHa on overlapping layers, no DoRA",
     [("lokr_factor8", 0.7), ("lora", -0.4), ("mixed_algo", 1.3)]),
    ("set_dora", "DoRA adapters on shared layers: each against the untouched W0",
     [("lokr_dora", 0.8), ("lora_dora", 0.5), ("lokr_tucker", 1.0)]),
    ("set_dora_input", "input-axis DoRA with an output-axis DoRA and a plain LoKr",
     [("lokr_dora_wd_on_input", 0.6), ("lokr_dora", -0.5), ("lokr_subset", 2.0)]),
]


# ------------------------------------------------------------------ bad adapters


def bad_cases(rng, layers):
    """(name, why, expected module substring or None, {key: (dtype, shape, raw)})."""
    Lp, Lc, Ls, Lo = layers[P], layers[C], layers[S], layers[O]
    good = module_tensors(Lo, build_module(rng, Lo, dict(algo="lokr", split=(10, 6, 10, 10),
                                                         alpha=2.0)), "F32")
    mp = Lp.module
    mc = Lc.module
    out = []

    def add(name, why, mod, params, L=None, dtype="F32", keep_good=True, raw=None):
        t = dict(good) if keep_good else {}
        if params is not None:
            for k, v in params.items():
                t[mod + "." + k] = (dtype, tuple(np.shape(v)), encode(v, dtype))
        if raw:
            t.update(raw)
        out.append((name, why, mod, t))

    g = rng.standard_normal
    a2 = np.array(2.0)
    add("bad_m1m2", "m1*m2 = 5*16 = 80 != out 96", mp,
        {"lokr_w1": g((5, 8)), "lokr_w2_a": g((16, 4)), "lokr_w2_b": g((4, 8)), "alpha": a2})
    add("bad_n1n2", "n1*n2 = 8*9 = 72 != in 64", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((4, 9)), "alpha": a2})
    add("bad_w2b_kk", "conv w2_b has 70 columns, not divisible by kk 9", mc,
        {"lokr_w1": g((6, 4)), "lokr_w2_a": g((8, 3)), "lokr_w2_b": g((3, 70)), "alpha": a2})
    add("bad_w2_kernel", "full lokr_w2 kernel 1x1 on a 3x3 conv", mc,
        {"lokr_w1": g((6, 4)), "lokr_w2": g((8, 8, 1, 1)), "alpha": a2})
    add("bad_w1_and_w1a", "lokr_w1 together with lokr_w1_a/lokr_w1_b", mp,
        {"lokr_w1": g((8, 8)), "lokr_w1_a": g((8, 2)), "lokr_w1_b": g((2, 8)),
         "lokr_w2_a": g((12, 2)), "lokr_w2_b": g((2, 8)), "alpha": a2})
    add("bad_w1a_no_w1b", "lokr_w1_a without lokr_w1_b", mp,
        {"lokr_w1_a": g((8, 2)), "lokr_w2_a": g((12, 2)), "lokr_w2_b": g((2, 8)), "alpha": a2})
    add("bad_missing_w2", "lokr_w1 with no W2 at all", mp, {"lokr_w1": g((8, 8)), "alpha": a2})
    add("bad_w2a_no_w2b", "lokr_w2_a without lokr_w2_b", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "alpha": a2})
    add("bad_rank_pair", "w2_a (12,4) with w2_b (3,8): rank mismatch within the pair", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((3, 8)), "alpha": a2})
    add("bad_rank_w1_w2", "w1 rank 4, w2 rank 2", mp,
        {"lokr_w1_a": g((8, 4)), "lokr_w1_b": g((4, 8)), "lokr_w2_a": g((12, 2)),
         "lokr_w2_b": g((2, 8)), "alpha": a2})
    add("bad_rank_tucker", "t2 (3,3,3,3) with w2_a (2,8)", mc,
        {"lokr_w1": g((6, 4)), "lokr_t2": g((3, 3, 3, 3)), "lokr_w2_a": g((2, 8)),
         "lokr_w2_b": g((3, 8)), "alpha": a2})
    add("bad_t2_linear", "lokr_t2 on a linear layer", mp,
        {"lokr_w1": g((8, 8)), "lokr_t2": g((3, 3, 1, 1)), "lokr_w2_a": g((3, 12)),
         "lokr_w2_b": g((3, 8)), "alpha": a2})
    add("bad_t2_kernel", "lokr_t2 kernel 5x5 on a 3x3 conv", mc,
        {"lokr_w1": g((6, 4)), "lokr_t2": g((3, 3, 5, 5)), "lokr_w2_a": g((3, 8)),
         "lokr_w2_b": g((3, 8)), "alpha": a2})
    add("bad_alpha_nan", "NaN alpha on a low-rank module (used)", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((4, 8)),
         "alpha": np.array(float("nan"))})
    add("bad_alpha_inf_f16", "+inf F16 alpha on a low-rank module (used)", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((4, 8)),
         "alpha": np.array(float("inf"))}, dtype="F16")
    add("bad_dora_shape", "dora_scale (1,7) fits neither (96,1) nor (1,64)", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((4, 8)), "alpha": a2,
         "dora_scale": np.abs(g((1, 7)))})
    add("bad_dora_shape_conv", "dora_scale (48,32,1,1) on a conv", mc,
        {"lokr_w1": g((6, 4)), "lokr_w2_a": g((8, 3)), "lokr_w2_b": g((3, 72)), "alpha": a2,
         "dora_scale": np.abs(g((48, 32, 1, 1)))})
    add("bad_no_layer", "module maps to no base layer", "lycoris_mid_nothere",
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((4, 8)), "alpha": a2})
    add("bad_nan_factor", "NaN inside lokr_w2_b", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)),
         "lokr_w2_b": np.where(np.arange(32).reshape(4, 8) == 13, np.nan, g((4, 8))),
         "alpha": a2})
    add("bad_inf_factor", "+inf inside lokr_w1", mp,
        {"lokr_w1": np.where(np.arange(64).reshape(8, 8) == 5, np.inf, g((8, 8))),
         "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((4, 8)), "alpha": a2})
    add("bad_unknown_key", "an unknown key lokr_w3 in a LoKr module", mp,
        {"lokr_w1": g((8, 8)), "lokr_w2_a": g((12, 4)), "lokr_w2_b": g((4, 8)), "alpha": a2,
         "lokr_w3": g((2, 2))})
    add("bad_oft", "unsupported algorithm (Diag-OFT oft_blocks)", mp,
        {"oft_blocks": g((4, 24, 24)), "alpha": a2})
    add("bad_only_alpha", "a module with only alpha and dora_scale, no algorithm", mp,
        {"alpha": a2, "dora_scale": np.abs(g((96, 1)))})
    add("bad_loha_shape", "LoHa hada_w1_a (95,4) on out 96", mp,
        {"hada_w1_a": g((95, 4)), "hada_w1_b": g((4, 64)), "hada_w2_a": g((95, 4)),
         "hada_w2_b": g((4, 64)), "alpha": a2})
    add("bad_loha_rank", "LoHa hada_w2_a rank 4 with hada_w2_b rank 3", mp,
        {"hada_w1_a": g((96, 4)), "hada_w1_b": g((4, 64)), "hada_w2_a": g((96, 4)),
         "hada_w2_b": g((3, 64)), "alpha": a2})
    add("bad_lora_shape", "lora_down (4,63) on in 64", mp,
        {"lora_up.weight": g((96, 4)), "lora_down.weight": g((4, 63)), "alpha": a2})
    add("bad_lora_rank", "lora_up (96,4) with lora_down (3,64)", mp,
        {"lora_up.weight": g((96, 4)), "lora_down.weight": g((3, 64)), "alpha": a2})
    add("bad_lora_conv_kernel", "LoCon down kernel 1x1 without mid on a 3x3 conv", mc,
        {"lora_up.weight": g((48, 4, 1, 1)), "lora_down.weight": g((4, 32, 1, 1)), "alpha": a2})
    # A file with no tensors at all (only metadata): nothing to name.
    out.append(("bad_empty", "a file with no modules", None, {}))
    return out


# ------------------------------------------------------------------ generation


def x_for(rng, L):
    if L.conv:
        return rng.standard_normal((4, L.inn, 5, 5))
    return rng.standard_normal((4, L.inn))


def generate(root):
    base_path = os.path.join(root, "tests/data/fixtures/base.safetensors")
    layers, _ = load_base(base_path)
    gen = os.path.join(root, "tests/data/gen")
    rel_ad = "tests/data/gen/adapters/%s.safetensors"
    rel_ex = "tests/data/gen/expected/%s.safetensors"
    manifest = {
        "format_version": 1,
        "generator": "tests/gen/make_cases.py",
        "seed": SEED,
        "base": "tests/data/fixtures/base.safetensors",
        "notes": "paths are relative to top_srcdir; tol is rel = max|a-b|/max|b|; "
                 "each check runs `lokr merge` (merge) or lokr_apply_* (apply) with the "
                 "listed adapters and multipliers and compares <layer>.<tensor>",
        "cases": [],
        "bad": [],
    }
    loaded = {}
    for name, desc, dtype, mods in CASES:
        rng = rng_for(name)
        tensors = {}
        for lname, spec in sorted(mods.items()):
            L = layers[lname]
            p = build_module(rng, L, spec)
            tensors.update(module_tensors(L, p, dtype, spec.get("prefix", "lycoris")))
        meta = {"lokrd_gen_case": name, "ss_network_module": "lycoris.kohya",
                "ss_network_args": json.dumps({"algo": "generated", "case": name})}
        apath = os.path.join(root, rel_ad % name)
        st_write(apath, tensors, meta)
        # Everything below is computed from the file as written (rounded values).
        amods = load_adapter_any_prefix(apath, layers)
        loaded[name] = amods
        lams = {"merged": 1.0, "merged_m0.5": 0.5}
        if name in SWEEP:
            lams.update({"merged_m0": 0.0, "merged_m-1": -1.0, "merged_m2": 2.0})
        exp = {}
        for lname, m in sorted(amods.items()):
            L = layers[lname]
            for t, lam in lams.items():
                W = m.merged(lam)
                assert np.all(np.isfinite(W)), (name, lname)
                exp[lname + "." + t] = f32_tensor(W.reshape(L.shape))
            x = x_for(rng, L).astype(np.float32).astype(np.float64)
            exp[lname + ".x"] = f32_tensor(x)
            exp[lname + ".y"] = f32_tensor(forward(L, m.merged(1.0), x))
            if m.dora or name in SWEEP:
                exp[lname + ".y_m0.5"] = f32_tensor(forward(L, m.merged(0.5), x))
            if name in STRIDED and L.conv:
                exp[lname + ".y_s2p1d2"] = f32_tensor(forward(L, m.merged(1.0), x, 2, 1, 2))
        st_write(os.path.join(root, rel_ex % name), exp, {"case": name, "rule": "lokrd"})
        merges = [{"tensor": t, "adapters": [[rel_ad % name, lam]], "tol": 1e-5,
                   "exact": lam == 0.0} for t, lam in lams.items()]
        for od in OUT_DTYPES.get(name, []):
            merges.append({"tensor": "merged", "adapters": [[rel_ad % name, 1.0]], "dtype": od,
                           "tol": 4e-3 if od == "f16" else 1e-2})
        applies = [{"tensor": "y", "adapters": [[rel_ad % name, 1.0]], "tol": 5e-5}]
        half = sorted(k for k, m in amods.items() if m.dora or name in SWEEP)
        if half:
            applies.append({"tensor": "y_m0.5", "adapters": [[rel_ad % name, 0.5]], "tol": 5e-5,
                            "layers": half})
        convs = sorted(k for k in amods if layers[k].conv)
        if name in STRIDED and convs:
            applies.append({"tensor": "y_s2p1d2", "adapters": [[rel_ad % name, 1.0]], "tol": 5e-5,
                            "layers": convs, "conv": CONV_S2P1D2})
        manifest["cases"].append({
            "name": name, "description": desc, "save_dtype": dtype,
            "expected": rel_ex % name,
            "layers": sorted(amods),
            "dora_layers": sorted(k for k, m in amods.items() if m.dora),
            "merge": merges,
            "apply": applies,
        })

    for name, desc, members in SETS:
        rng = rng_for(name)
        touched = sorted(set().union(*(loaded[c].keys() for c, _ in members)))
        exp = {}
        for lname in touched:
            L = layers[lname]
            ml = [(loaded[c][lname], lam) for c, lam in members if lname in loaded[c]]
            W = merged_set(L, ml)
            exp[lname + ".merged_set"] = f32_tensor(W.reshape(L.shape))
            x = x_for(rng, L).astype(np.float32).astype(np.float64)
            exp[lname + ".x"] = f32_tensor(x)
            exp[lname + ".y_set"] = f32_tensor(forward(L, W, x))
        st_write(os.path.join(root, rel_ex % name), exp, {"case": name, "rule": "lokrd"})
        fwd = [[rel_ad % c, lam] for c, lam in members]
        manifest["cases"].append({
            "name": name, "description": desc + " (lycoris-format.md §9.25, decision 3)",
            "expected": rel_ex % name, "layers": touched,
            "dora_layers": sorted({l for c, _ in members for l, m in loaded[c].items() if m.dora}),
            "merge": [{"tensor": "merged_set", "adapters": fwd, "tol": 1e-5},
                      {"tensor": "merged_set", "adapters": fwd[::-1], "tol": 1e-5}],
            "apply": [{"tensor": "y_set", "adapters": fwd, "tol": 5e-5},
                      {"tensor": "y_set", "adapters": fwd[::-1], "tol": 5e-5}],
        })

    # The same tensors as lokr_subset in an odd but valid container (§9.24
    # acceptance): leading/trailing header whitespace, no padding (misaligned
    # data), header keys and data in a different order, metadata last.
    sub_t, sub_meta = st_read(os.path.join(root, rel_ad % "lokr_subset"))
    st_write_quirky(os.path.join(root, rel_ad % "container_quirks"), sub_t, sub_meta)
    q = dict(manifest["cases"][[c["name"] for c in manifest["cases"]].index("lokr_subset")])
    q["name"] = "container_quirks"
    q["description"] = "§9.24 acceptance: lokr_subset in an unpadded, reordered, whitespace header"
    q = json.loads(json.dumps(q).replace(rel_ad % "lokr_subset", rel_ad % "container_quirks"))
    manifest["cases"].append(q)

    rng = rng_for("bad")
    os.makedirs(os.path.join(gen, "bad"), exist_ok=True)
    for name, why, raw in container_cases(sub_t):
        path = os.path.join(gen, "bad", name + ".safetensors")
        with open(path, "wb") as f:
            f.write(raw)
        manifest["bad"].append({"name": name, "file": "tests/data/gen/bad/%s.safetensors" % name,
                                "why": why, "expect": name + ".safetensors"})

    # §9.23 "maps to two layers": a tiny base where blk.a_b and blk_a.b collide.
    cb_rel = "tests/data/gen/collide_base.safetensors"
    cb = {"blk.a_b.weight": f32_tensor(rng.standard_normal((8, 4))),
          "blk_a.b.weight": f32_tensor(rng.standard_normal((8, 4))),
          "other.weight": f32_tensor(rng.standard_normal((4, 4)))}
    st_write(os.path.join(root, cb_rel), cb, {"lokrd_gen": "colliding layer names"})
    clayers, _ = load_base(os.path.join(root, cb_rel))
    col = {"lycoris_blk_a_b.lokr_w1": f32_tensor(rng.standard_normal((2, 2))),
           "lycoris_blk_a_b.lokr_w2": f32_tensor(rng.standard_normal((4, 2))),
           "lycoris_other.lokr_w1": f32_tensor(rng.standard_normal((2, 2))),
           "lycoris_other.lokr_w2": f32_tensor(rng.standard_normal((2, 2)))}
    path = os.path.join(gen, "bad", "bad_two_layers.safetensors")
    st_write(path, col, {"lokrd_gen_case": "bad_two_layers"})
    try:
        load_adapter(path, clayers)
        sys.exit("bad_two_layers: the reference accepts it")
    except Reject as e:
        assert e.module == "lycoris_blk_a_b", e
    manifest["bad"].append({"name": "bad_two_layers", "file": "tests/data/gen/bad/bad_two_layers.safetensors",
                            "why": "lycoris_blk_a_b maps to both blk.a_b and blk_a.b",
                            "expect": "lycoris_blk_a_b", "base": cb_rel})

    for name, why, mod, tensors in bad_cases(rng, layers):
        path = os.path.join(gen, "bad", name + ".safetensors")
        st_write(path, tensors, {"lokrd_gen_case": name})
        # The reference must reject it too, and for the named module.
        try:
            load_adapter(path, layers)
        except Reject as e:
            if mod is not None and e.module != mod:
                sys.exit("%s: reference rejected %s, expected %s" % (name, e.module, mod))
        else:
            sys.exit("%s: the reference accepts this 'bad' adapter" % name)
        manifest["bad"].append({"name": name, "file": "tests/data/gen/bad/%s.safetensors" % name,
                                "why": why, "expect": mod})

    manifest["fixtures"] = fixture_manifest(root)
    with open(os.path.join(gen, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = 0
    for d, _, files in os.walk(gen):
        for fn in files:
            total += os.path.getsize(os.path.join(d, fn))
    print("make_cases: %d cases, %d sets, %d bad adapters, %.2f MB in %s"
          % (len(CASES), len(SETS), len(manifest["bad"]), total / 1e6, gen))


def st_write_quirky(path, tensors, meta):
    """A valid safetensors file no reference writer would produce: header
    with leading and trailing JSON whitespace and no padding (so data is
    misaligned), keys in reverse name order, data in a third order,
    __metadata__ last."""
    names = sorted(tensors)
    data_order = names[1::2] + names[0::2]
    off, offs = 0, {}
    for k in data_order:
        offs[k] = (off, off + len(tensors[k][2]))
        off += len(tensors[k][2])
    parts = []
    for k in reversed(names):
        dt, shape, _ = tensors[k]
        parts.append('%s: {"shape": %s, "data_offsets": [%d, %d], "dtype": "%s"}'
                     % (json.dumps(k), json.dumps(list(shape)), offs[k][0], offs[k][1], dt))
    parts.append('"__metadata__": %s' % json.dumps(meta))
    h = ("\n\t {" + ",\n ".join(parts) + "}\r\n  ").encode("utf-8")
    if (8 + len(h)) % 2 == 0:
        h += b" "
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for k in data_order:
            f.write(tensors[k][2])


def container_cases(tensors):
    """Malformed containers (§9.24), built from a valid adapter's tensors;
    the message must name the file."""
    names = sorted(tensors)

    def build(entries, data, hdr_text=None, n=None, tail=b""):
        h = hdr_text if hdr_text is not None else json.dumps(entries).encode("utf-8")
        h += b" " * ((8 - len(h) % 8) % 8)
        return struct.pack("<Q", len(h) if n is None else n) + h + data + tail

    def entries(mutate=None):
        e, off, data = {}, 0, b""
        for i, k in enumerate(names):
            dt, shape, raw = tensors[k]
            d = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
            if mutate:
                mutate(i, k, d)
            e[k] = d
            off += len(raw)
            data += raw
        return e, data

    good_e, good_d = entries()
    out = []
    out.append(("bad_st_short", "file shorter than 8 bytes", b"\x10\x00\x00"))
    out.append(("bad_st_header_past_eof", "header length past the end of the file",
                build(good_e, good_d, n=len(json.dumps(good_e)) + len(good_d) + 4096)))
    out.append(("bad_st_header_too_large", "header length > 1e8",
                build(good_e, good_d, n=100000008)))
    out.append(("bad_st_not_json", "header is not JSON", build(None, good_d, hdr_text=b"{not json")))
    out.append(("bad_st_not_object", "header top level is an array",
                build(None, good_d, hdr_text=b"[1, 2, 3]")))
    out.append(("bad_st_non_utf8", "header is not UTF-8",
                build(None, good_d, hdr_text=b'{"\xff\xfe": 1}')))
    e, d = entries(lambda i, k, x: x.update(dtype="F33") if i == 0 else None)
    out.append(("bad_st_unknown_dtype", "unknown dtype F33", build(e, d)))

    def gap(i, k, x):
        if i > 0:
            x["data_offsets"] = [x["data_offsets"][0] + 4, x["data_offsets"][1] + 4]
    e, d = entries(gap)
    out.append(("bad_st_gap", "a 4-byte hole between tensors", build(e, d + b"\0" * 4)))

    def overlap(i, k, x):
        if i == 1:
            x["data_offsets"] = [x["data_offsets"][0] - 4, x["data_offsets"][1] - 4]
    e, d = entries(overlap)
    out.append(("bad_st_overlap", "two tensors overlap by 4 bytes", build(e, d)))

    def shape_bad(i, k, x):
        if i == 0:
            x["shape"] = x["shape"][:-1] + [x["shape"][-1] + 1] if x["shape"] else [2]
    e, d = entries(shape_bad)
    out.append(("bad_st_size_mismatch", "shape x dtype != END-BEGIN", build(e, d)))

    def end_lt_begin(i, k, x):
        if i == len(names) - 1:
            x["data_offsets"] = [x["data_offsets"][1], x["data_offsets"][0]]
    e, d = entries(end_lt_begin)
    out.append(("bad_st_end_before_begin", "END < BEGIN", build(e, d)))
    out.append(("bad_st_trailing", "trailing bytes after the data", build(good_e, good_d, tail=b"XY")))
    txt = json.dumps(good_e)
    first = names[0]
    dup = txt[:-1] + ", " + json.dumps(first) + ": " + json.dumps(good_e[first]) + "}"
    out.append(("bad_st_duplicate", "duplicate tensor key", build(None, good_d, hdr_text=dup.encode())))
    e2 = dict(good_e)
    e2["__metadata__"] = {"a": 1}
    out.append(("bad_st_metadata_nonstring", "non-string metadata value", build(e2, good_d)))

    def overflow(i, k, x):
        if i == 0:
            x["shape"] = [2 ** 40, 2 ** 40, 2 ** 40]  # each dim fine, product overflows
    e, d = entries(overflow)
    out.append(("bad_st_shape_overflow", "shape product overflows", build(e, d)))
    return out


def load_adapter_any_prefix(path, layers):
    """load_adapter, but also accepting the lora_unet_ prefix the cases use."""
    alias = {}
    for l in layers.values():
        alias["lora_unet_" + l.name.replace(".", "_")] = l.module
    t = st_floats(path)
    bymod = {}
    for k, v in t.items():
        mod, _, param = k.partition(".")
        bymod.setdefault(alias.get(mod, mod), {})[param] = v
    res = {}
    for mod, p in bymod.items():
        L = [l for l in layers.values() if l.module == mod][0]
        res[L.name] = Module(mod, p, L)
    return res


def fixture_manifest(root):
    """Checks on the public LyCORIS fixtures (tests/data/fixtures).  For DoRA
    layers merged_m0.5 follows LyCORIS f49d30d; lokrd's expectation there is
    W0 + 0.5 (merged - W0), which the runner derives ("interp")."""
    fx = os.path.join(root, "tests/data/fixtures")
    with open(os.path.join(fx, "cases.json")) as f:
        cj = json.load(f)
    res = []
    for c in cj["cases"]:
        if not os.path.exists(os.path.join(fx, c["adapter_file"])):
            continue
        ad = "tests/data/fixtures/" + c["adapter_file"]
        dora = sorted(l["layer"] for l in c["layers"] if l.get("dora"))
        res.append({
            "name": "fixture_" + c["name"], "description": c["description"],
            "expected": "tests/data/fixtures/" + c["expected_file"],
            "layers": sorted(c["layers_adapted"]), "dora_layers": dora,
            "merge": [{"tensor": "merged", "adapters": [[ad, 1.0]], "tol": 1e-5},
                      {"tensor": "merged_m0.5", "adapters": [[ad, 0.5]], "tol": 1e-5,
                       "dora_interp_from": "merged"}],
            "apply": [{"tensor": "y", "adapters": [[ad, 1.0]], "tol": 5e-5}],
        })
    return res


# ------------------------------------------------------------------ self-check


def selfcheck(root):
    """Rebuild the public fixtures' expected tensors from their adapters with
    this reference.  Fails (exit 1) above 1e-6."""
    fx = os.path.join(root, "tests/data/fixtures")
    layers, _ = load_base(os.path.join(fx, "base.safetensors"))
    with open(os.path.join(fx, "cases.json")) as f:
        cj = json.load(f)
    worst = {}
    bad = 0
    for c in cj["cases"]:
        apath = os.path.join(fx, c["adapter_file"])
        if not os.path.exists(apath):
            continue
        mods = load_adapter(apath, layers)
        exp = st_floats(os.path.join(fx, c["expected_file"]))
        for lname, m in sorted(mods.items()):
            L = layers[lname]
            rows = [("merged", m.merged(1.0)), ("y", forward(L, m.merged(1.0), exp[lname + ".x"]))]
            if m.dora is None:
                rows.append(("merged_m0.5", m.merged(0.5)))
            else:
                # The fixture follows LyCORIS f49d30d at 0.5; check that rule to prove
                # the g we compute is theirs.  lokrd's rule is checked by the runner.
                rows.append(("merged_m0.5(LyCORIS rule)", m.merged_lycoris(0.5)))
            for what, got in rows:
                key = lname + "." + what.split("(")[0]
                e = rel(got.reshape(exp[key].shape), exp[key])
                tag = what + (" dora" if m.dora else "")
                worst[tag] = max(worst.get(tag, 0.0), e)
                status = "ok" if e <= 1e-6 else "FAIL"
                if e > 1e-6:
                    bad += 1
                print("%-30s %-20s %-28s rel %.2e %s" % (c["name"], lname, what, e, status))
    print("selfcheck worst:", ", ".join("%s %.2e" % kv for kv in sorted(worst.items())))
    print("selfcheck: %s" % ("FAILED (%d)" % bad if bad else "all <= 1e-6"))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--selfcheck", action="store_true", help="verify against the public fixtures")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", ".."))
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    if a.selfcheck:
        sys.exit(selfcheck(root))
    generate(root)


if __name__ == "__main__":
    main()
