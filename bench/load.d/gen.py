"""gen.py - synthetic base and adapters for bench/load (deterministic, numpy).

Base (f16 on disk, f32 in lokrd's shared segment, ~105 MB):
  small.l0..l3   linear 320x320    the 1 x 320 apply, the registry, healthz
  big.l0..l15    linear 1280x1280  batching, the cache cliff, merge, cold load

Adapters (LoKr; module names lycoris_<layer with . -> _>):
  tiny   W1 16x16 full + W2 20x20 rank 4 on small.l0, and W1 32x32 full +
         W2 40x40 rank 8 on big.l0 (~15 KB): apply, batching, registry
  mid    W1 4x4 full + W2 320x320 full on big.l0..l3 (~1.6 MB): the cliff
  cold   W1 2x2 full + W2 640x640 full on big.l0..l15 (~26 MB): cold load, merge
"""
import json
import os
import struct

import numpy as np

SMALL = ["small.l%d" % i for i in range(4)]
BIG = ["big.l%d" % i for i in range(16)]


def write_st(path, tensors, meta=None):
    """Write a safetensors file: tensors is a list of (name, ndarray)."""
    header = {}
    off = 0
    blobs = []
    for name, arr in sorted(tensors, key=lambda t: t[0]):
        arr = np.ascontiguousarray(arr)
        dt = {np.float32: "F32", np.float16: "F16"}[arr.dtype.type]
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.rename(tmp, path)
    return 8 + len(h) + off


def module(layer):
    return "lycoris_" + layer.replace(".", "_")


def base(path, seed=1):
    rng = np.random.default_rng(seed)
    t = []
    for name in SMALL:
        t.append((name + ".weight", (rng.standard_normal((320, 320)) * 0.05).astype(np.float16)))
    for name in BIG:
        t.append((name + ".weight", (rng.standard_normal((1280, 1280)) * 0.03).astype(np.float16)))
        t.append((name + ".bias", (rng.standard_normal(1280) * 0.01).astype(np.float16)))
    return write_st(path, t)


def lokr(t, rng, layer, m1, n1, m2, n2, rank=None):
    """LoKr module on `layer`: W1 (m1 x n1) full, W2 (m2 x n2) full or rank `rank`."""
    m = module(layer)
    t.append((m + ".lokr_w1", (rng.standard_normal((m1, n1)) * 0.1).astype(np.float32)))
    if rank:
        t.append((m + ".lokr_w2_a", (rng.standard_normal((m2, rank)) * 0.1).astype(np.float32)))
        t.append((m + ".lokr_w2_b", (rng.standard_normal((rank, n2)) * 0.1).astype(np.float32)))
        t.append((m + ".alpha", np.array(float(rank), dtype=np.float32)))
    else:
        t.append((m + ".lokr_w2", (rng.standard_normal((m2, n2)) * 0.01).astype(np.float32)))
        t.append((m + ".alpha", np.array(1.0, dtype=np.float32)))


def tiny(path, seed):
    rng = np.random.default_rng(seed)
    t = []
    lokr(t, rng, "small.l0", 16, 16, 20, 20, rank=4)
    lokr(t, rng, "big.l0", 32, 32, 40, 40, rank=8)
    return write_st(path, t, {"ss_network_module": "lycoris.kohya"})


def mid(path, seed):
    rng = np.random.default_rng(seed)
    t = []
    for layer in BIG[:4]:
        lokr(t, rng, layer, 4, 4, 320, 320)
    return write_st(path, t)


def cold(path, seed):
    rng = np.random.default_rng(seed)
    t = []
    for layer in BIG:
        lokr(t, rng, layer, 2, 2, 640, 640)
    return write_st(path, t)


def many(dirpath, n, prefix="r", seed=1000):
    """n tiny adapters prefix00000..: one file written, the rest are copies
    (distinct inodes, identical bytes), so 10,000 take a second."""
    os.makedirs(dirpath, exist_ok=True)
    first = os.path.join(dirpath, "%s%05d.safetensors" % (prefix, 0))
    tiny(first, seed)
    with open(first, "rb") as f:
        data = f.read()
    for i in range(1, n):
        with open(os.path.join(dirpath, "%s%05d.safetensors" % (prefix, i)), "wb") as f:
            f.write(data)
    return len(data)
