#!/usr/bin/env python3
"""The merged-tensor cache of POST /v1/merge (daemon/merge_cache.c), against
the real daemon: a repeated merge is served from the cache (hits in
/metrics, no new misses) with byte-identical tensors; the key covers the
multiplier, the dtype, the output kind and the layers but not the order of
the set; a new version of an adapter (PUT, a file replaced on disk, DELETE)
is never served from old entries; the byte budget holds (a tensor larger
than the budget is not stored, LRU eviction keeps the gauge under it); and
--merge-cache-bytes 0 gives the same bytes with the cache off."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")
ADAPTERS = ["lokr_balanced", "lokr_factor8", "lora", "lokr_dora"]


def metrics(d):
    out = {}
    for line in d.get("/metrics").body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def counts(d):
    m = metrics(d)
    return (m.get("lokrd_merge_cache_hits_total", -1), m.get("lokrd_merge_cache_misses_total", -1),
            m.get("lokrd_merge_cache_bytes", -1))


def merge(d, adapters, **kw):
    body = {"adapters": adapters}
    body.update(kw)
    r = d.post("/v1/merge", body)
    if r.status != 200:
        raise AssertionError("merge %s: %d %s" % (body, r.status, r.body[:300]))
    return r.body


def tensors(body):
    """The tensor bytes of a safetensors body by name (header metadata aside)."""
    t, _ = L.st_read(body)
    return {k: v.tobytes() for k, v in t.items()}


def run(d, d0, ck, adir):
    A = [{"id": "lokr_balanced", "multiplier": 0.7}]
    h0, m0, b0 = counts(d)
    ck(h0 == 0 and m0 == 0 and b0 == 0, "fresh cache: no hits, misses or bytes (%s)" %
       ((h0, m0, b0),))
    first = merge(d, A)
    n = len(tensors(first))
    h1, m1, b1 = counts(d)
    ck(n > 0 and m1 == n and h1 == 0, "first merge: %d misses, no hits (%s)" % (n, (h1, m1)))
    ck(b1 > 0, "first merge: bytes cached (%d)" % b1)
    again = merge(d, A)
    h2, m2, b2 = counts(d)
    ck(again == first, "repeat: the whole response is byte-identical")
    ck(h2 == h1 + n and m2 == m1, "repeat: %d hits, no new miss (%s)" % (n, (h2, m2)))
    ck(b2 == b1, "repeat: cached bytes unchanged")
    ck(merge(d0, A) == first, "cache off (--merge-cache-bytes 0): the same bytes")
    ck(counts(d0)[2] == 0, "cache off: nothing held")

    # The key: multiplier, dtype, output kind, layers; not the set's order.
    merge(d, [{"id": "lokr_balanced", "multiplier": 0.8}])
    h3, m3, _ = counts(d)
    ck(m3 == m2 + n and h3 == h2, "another multiplier misses")
    f16 = merge(d, A, dtype="f16")
    ck(counts(d)[1] == m3 + n, "another dtype misses")
    ck(tensors(merge(d, A, dtype="f16")) == tensors(f16), "f16 repeat identical")
    ck(tensors(merge(d0, A, dtype="f16")) == tensors(f16), "f16 from the cache = cache off")
    m4 = counts(d)[1]
    delta = merge(d, A, output="delta")
    ck(counts(d)[1] == m4 + n, "output delta misses")
    ck(tensors(merge(d0, A, output="delta")) == tensors(delta), "delta = cache off")
    AB = [{"id": "lokr_balanced", "multiplier": 0.5}, {"id": "lora", "multiplier": -1.25}]
    BA = list(reversed(AB))
    ab = merge(d, AB)
    h5, m5, _ = counts(d)
    ba = merge(d, BA)
    h6, m6, _ = counts(d)
    nab = len(tensors(ab))
    ck(m6 == m5 and h6 == h5 + nab, "the set in another order hits (%s)" % ((h6 - h5, m6 - m5),))
    ck(tensors(ba) == tensors(ab) == tensors(merge(d0, BA)), "either order: identical tensors")
    one = merge(d, A, layers=["down.attn.to_q"])
    h7, m7, _ = counts(d)
    ck(len(tensors(one)) == 1 and m7 == m6, "a layer subset is served from the cache")
    ck(tensors(one)["down.attn.to_q.weight"] == tensors(first)["down.attn.to_q.weight"],
       "a layer subset: the same bytes")
    dora = [{"id": "lokr_dora", "multiplier": 0.9}]
    ck(merge(d, dora) == merge(d, dora) == merge(d0, dora), "DoRA: repeat = first = cache off")

    # A new version by PUT: old entries dropped at once, the new file merged.
    before = counts(d)[2]
    with open(os.path.join(F, "adapters", "lokr_factor8.safetensors"), "rb") as f:
        newer = f.read()
    r = d.request("PUT", "/v1/adapters/lokr_balanced", body=newer,
                  headers={"Content-Type": "application/octet-stream"})
    ck(r.status == 200, "PUT a new version: 200 (%d)" % r.status)
    after = counts(d)[2]
    ck(after < before, "PUT: the adapter's entries freed (%d -> %d bytes)" % (before, after))
    _, mp0, _ = counts(d)
    put1 = merge(d, A)
    _, mp1, _ = counts(d)
    ck(mp1 - mp0 == len(tensors(put1)), "after PUT: every tensor computed again")
    ck(tensors(put1) != tensors(first), "after PUT: the new version's weights")
    ck(put1 == merge(d0, A), "after PUT: = cache off on the same file")
    ck(merge(d, A) == put1, "after PUT: the repeat hits the new entries")

    # A file replaced behind lokrd's back: the identity in the key changes.
    p = os.path.join(adir, "lora.safetensors")
    with open(os.path.join(F, "adapters", "lokr_balanced.safetensors"), "rb") as f:
        data = f.read()
    tmpf = p + ".new"
    with open(tmpf, "wb") as f:
        f.write(data)
    os.rename(tmpf, p)
    _, mr0, _ = counts(d)
    lb = merge(d, [{"id": "lora", "multiplier": 0.7}])
    _, mr1, _ = counts(d)
    ck(mr1 - mr0 == len(tensors(lb)), "file replaced on disk: computed again")
    ck(tensors(lb) == tensors(first), "file replaced on disk: the new file's weights")

    # DELETE drops the id's entries.
    before = counts(d)[2]
    r = d.request("DELETE", "/v1/adapters/lora")
    ck(r.status == 204, "DELETE: 204")
    ck(counts(d)[2] < before, "DELETE: the adapter's entries freed")
    ck(d.post("/v1/merge", {"adapters": [{"id": "lora"}]}).status == 404,
       "DELETE: a merge of it is 404, not a cache hit")


def run_budget(ck, adir):
    """A budget of 200,000 bytes: the 320 x 320 f32 layer (409,600 bytes) is
    never stored, the small ones are, under the budget."""
    d = L.Lokrd(BASE, adir, extra=["--threads", "2", "--merge-cache-bytes", "200000"])
    try:
        A = [{"id": "lokr_factor8", "multiplier": 1.5}]
        big = merge(d, A, layers=["down.attn.to_q"])
        big2 = merge(d, A, layers=["down.attn.to_q"])
        h, m, b = counts(d)
        ck(big == big2 and h == 0 and m == 2 and b == 0,
           "a tensor over the budget is not stored (%s)" % ((h, m, b),))
        full = merge(d, A)
        _, _, b = counts(d)
        ck(0 < b <= 200000, "the cached bytes stay under the budget (%d)" % b)
        ck(merge(d, A) == full, "under eviction: the repeat is identical")
        ck(metrics(d).get("lokrd_merge_cache_budget_bytes") == 200000, "budget gauge")
    finally:
        d.stop()


def main():
    res = L.Results("merge_cache")
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-mc-")
    adir = os.path.join(tmp, "adapters")
    os.mkdir(adir)
    for a in ADAPTERS:
        shutil.copy(os.path.join(F, "adapters", a + ".safetensors"), adir)
    t0 = time.time()
    d = L.Lokrd(BASE, adir, extra=["--threads", "2"])
    d0 = L.Lokrd(BASE, adir, extra=["--threads", "2", "--merge-cache-bytes", "0"])
    try:
        run_budget(ck, adir)
        run(d, d0, ck, adir)
    finally:
        ck(d.stop() == 0, "lokrd exits 0")
        ck(d0.stop() == 0, "lokrd (cache off) exits 0")
        shutil.rmtree(tmp, ignore_errors=True)
    print("(%.1f s)" % (time.time() - t0))
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
