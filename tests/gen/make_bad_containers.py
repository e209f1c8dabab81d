#!/usr/bin/env python3
"""Write hostile and odd safetensors containers for lokrd's tests.

tests/data/bad-containers/<what-is-wrong>.safetensors
    Each file breaks one rule of lycoris-format.md 1.3 (or a rule lokrd adds:
    duplicate keys, header must start with '{').  Every one must be rejected
    with LOKR_EFORMAT (tests/unit/safetensors.c) and by the daemon's upload
    path with a 4xx.
tests/data/odd-containers/<what-is-odd>.safetensors
    Valid files that exercise the corners a parser gets wrong (whitespace,
    unpadded headers, scalars, zero-element tensors, unknown fields, every
    dtype).  Every one must open.
tests/fuzz/corpus/safetensors/
    The seed corpus of tests/fuzz/fuzz_safetensors.c: all of the above plus
    tiny valid files of each dtype.

Python 3 standard library only; the output is deterministic, so re-running
the script leaves the committed files unchanged.

    python3 tests/gen/make_bad_containers.py [TOP_SRCDIR]
"""
import json
import os
import struct
import sys

TOP = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
BAD = os.path.join(TOP, "tests", "data", "bad-containers")
ODD = os.path.join(TOP, "tests", "data", "odd-containers")
SEEDS = os.path.join(TOP, "tests", "fuzz", "corpus", "safetensors")


def container(header, data=b"", n=None):
    """8-byte little-endian N, the header bytes, the data; N may be forced."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def entry(dtype, shape, begin, end, **extra):
    d = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
    d.update(extra)
    return d


def hdr(obj):
    return json.dumps(obj, separators=(",", ":"))


F32_ONE = struct.pack("<f", 1.0)


def valid_one():
    return container(hdr({"w": entry("F32", [1], 0, 4)}), F32_ONE)


BAD_FILES = {
    # length prefix
    "file-empty": b"",
    "file-7-bytes": b"\x02\x00\x00\x00\x00\x00\x00",
    "header-len-over-100MB": container("{}", n=100_000_001) + b"{}",
    "header-len-u64-max": container("{}", n=2**64 - 1),
    "header-len-past-eof": container("{}", n=3),
    "header-len-zero": container(b"", n=0),
    # encoding and JSON shape
    "header-invalid-utf8": container(b'{"w\xff":' + hdr(entry("F32", [1], 0, 4)).encode() + b"}",
                                     F32_ONE),
    "header-overlong-utf8": container(b'{"__metadata__":{"k":"\xc0\xaf"}}'),
    "header-utf8-surrogate": container(b'{"__metadata__":{"k":"\xed\xa0\x80"}}'),
    "header-truncated-json": container('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]'),
    "header-trailing-garbage": container('{} x'),
    "header-nul-padded": container(b"{}" + b"\x00" * 6),
    "header-leading-garbage": container("x{}"),
    "top-level-array": container("[1]"),
    "top-level-string": container('"safetensors"'),
    "top-level-number": container("42"),
    "name-with-nul-escape": container('{"a\\u0000b":' + hdr(entry("F32", [1], 0, 4)) + "}",
                                      F32_ONE),
    "deep-nesting": container('{"__metadata__":{"k":' + "[" * 3000 + "]" * 3000 + "}}"),
    "duplicate-tensor-key": container(
        '{"w":' + hdr(entry("F32", [1], 0, 4)) + ',"w":' + hdr(entry("F32", [1], 4, 8)) + "}",
        F32_ONE * 2),
    "duplicate-metadata-key": container('{"__metadata__":{"k":"1","k":"2"}}'),
    "duplicate-metadata-object": container('{"__metadata__":{},"__metadata__":{}}'),
    # tensor entries
    "entry-not-object": container('{"w":[0,4]}'),
    "dtype-unknown": container(hdr({"w": entry("F31", [1], 0, 4)}), F32_ONE),
    "dtype-lowercase": container(hdr({"w": entry("f32", [1], 0, 4)}), F32_ONE),
    "dtype-not-string": container(hdr({"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}}),
                                  F32_ONE),
    "dtype-missing": container(hdr({"w": {"shape": [1], "data_offsets": [0, 4]}}), F32_ONE),
    "shape-missing": container(hdr({"w": {"dtype": "F32", "data_offsets": [0, 4]}}), F32_ONE),
    "offsets-missing": container(hdr({"w": {"dtype": "F32", "shape": [1]}}), F32_ONE),
    "shape-negative": container(hdr({"w": entry("F32", [-1], 0, 4)}), F32_ONE),
    "shape-real-number": container('{"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}',
                                   F32_ONE),
    "shape-string": container(hdr({"w": entry("F32", ["1"], 0, 4)}), F32_ONE),
    "shape-over-2p48": container(hdr({"w": entry("U8", [2**48 + 1, 0], 0, 0)})),
    "shape-too-many-dims": container(hdr({"w": entry("F32", [1] * 9, 0, 4)}), F32_ONE),
    "shape-element-overflow": container(hdr({"w": entry("F32", [2**40, 2**40], 0, 4)}), F32_ONE),
    "shape-bits-overflow": container(hdr({"w": entry("F64", [2**48, 2**14], 0, 4)}), F32_ONE),
    "f4-odd-element-count": container(hdr({"w": entry("F4", [3], 0, 2)}), b"\x00\x00"),
    "f6-not-whole-bytes": container(hdr({"w": entry("F6_E2M3", [5], 0, 4)}), F32_ONE),
    # offsets
    "offsets-one-value": container('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}',
                                   F32_ONE),
    "offsets-three-values": container('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}',
                                      F32_ONE),
    "offsets-negative": container(hdr({"w": entry("F32", [1], -4, 0)}), F32_ONE),
    "offsets-real-number": container('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}',
                                     F32_ONE),
    "offsets-end-before-begin": container(hdr({"w": entry("U8", [0], 8, 4)}), F32_ONE * 2),
    "offsets-gap": container(hdr({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}),
                             F32_ONE * 3),
    "offsets-not-from-zero": container(hdr({"a": entry("F32", [1], 4, 8)}), F32_ONE * 2),
    "offsets-overlap": container(hdr({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}),
                                 F32_ONE * 3),
    "offsets-aliased": container(hdr({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 0, 8)}),
                                 F32_ONE * 2),
    "offsets-past-eof": container(hdr({"a": entry("F32", [4], 0, 16)}), F32_ONE * 3),
    "offsets-huge": container(hdr({"a": entry("U8", [2**48], 0, 2**48)}), F32_ONE),
    "size-mismatch-shape-dtype": container(hdr({"w": entry("F32", [2], 0, 4)}), F32_ONE),
    "size-mismatch-f16-as-f32": container(hdr({"w": entry("F16", [2, 3], 0, 24)}), F32_ONE * 6),
    "trailing-bytes": valid_one() + b"\x00",
    "trailing-bytes-empty-header": container("{}", b"junk"),
    "truncated-data": valid_one()[:-1],
    # metadata
    "metadata-not-object": container('{"__metadata__":["k","v"]}'),
    "metadata-string": container('{"__metadata__":"k"}'),
    "metadata-int-value": container('{"__metadata__":{"ss_network_dim":16}}'),
    "metadata-null-value": container('{"__metadata__":{"k":null}}'),
    "metadata-object-value": container('{"__metadata__":{"k":{"x":"y"}}}'),
}


def padded(h):
    h = h.encode() if isinstance(h, str) else h
    return h + b" " * ((8 - len(h) % 8) % 8)


def odd_files():
    out = {}
    out["whitespace-around-header"] = container(
        " \t\r\n" + hdr({"w": entry("F32", [1], 0, 4)}) + " \n\t\r ", F32_ONE)
    # unpadded: header of odd length, so F32/F64 data sit at odd addresses
    h = hdr({"a": entry("F32", [1], 0, 4), "b": entry("F64", [2], 4, 20)})
    if len(h) % 2 == 0:
        h += " "
    out["unpadded-misaligned"] = container(h, struct.pack("<f2d", -2.5, 1.25, -1e-3))
    out["scalar-and-zero-element"] = container(hdr({
        "alpha": entry("F16", [], 0, 2),
        "z0": entry("I64", [0, 3], 0, 0),
        "z1": entry("BF16", [0], 2, 2),
        "z2": entry("F32", [4, 0], 2, 2),
    }), struct.pack("<e", 4.0))
    out["alpha-shape-1"] = container(hdr({"alpha": entry("F32", [1], 0, 4)}), F32_ONE)
    out["extra-entry-fields"] = container(hdr({
        "w": entry("F32", [1], 0, 4, extra={"nested": [1, 2]}, note="x")}), F32_ONE)
    out["empty-header"] = container(padded("{}"))
    out["metadata-only"] = container(padded(hdr({"__metadata__": {"format": "pt", "": ""}})))
    out["unicode-names"] = container(json.dumps({
        "\u00e9\u4e2d\U0001f600.weight": entry("U8", [1], 0, 1),
        "tab\tname": entry("U8", [1], 1, 2)}, ensure_ascii=False), b"\x01\x02")
    # every dtype once, keys in random order, data in offset order
    dts = [("BOOL", 8), ("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6), ("U8", 8), ("I8", 8),
           ("F8_E5M2", 8), ("F8_E4M3", 8), ("F8_E8M0", 8), ("F8_E4M3FNUZ", 8),
           ("F8_E5M2FNUZ", 8), ("I16", 16), ("U16", 16), ("F16", 16), ("BF16", 16),
           ("I32", 32), ("U32", 32), ("F32", 32), ("C64", 64), ("F64", 64), ("I64", 64),
           ("U64", 64)]
    ents, at = {}, 0
    for name, bits in dts:
        nbytes = 4 * bits // 8  # four elements: whole bytes for every size
        ents["t_" + name] = entry(name, [2, 2], at, at + nbytes)
        at += nbytes
    keys = sorted(ents, key=lambda k: (len(k) * 7919) % 13)
    out["every-dtype"] = container(hdr({k: ents[k] for k in keys}), bytes(range(256))[:at])
    out["keys-out-of-offset-order"] = container(hdr({
        "z": entry("F32", [1], 0, 4), "a": entry("F32", [1], 4, 8)}), F32_ONE * 2)
    return out


def seed_files():
    out = {}
    vals = {
        "F32": struct.pack("<4f", 1.0, -2.0, 0.5, float("inf")),
        "F16": struct.pack("<4e", 1.0, -2.0, 6e-8, 65504.0),
        "BF16": struct.pack("<4H", 0x3F80, 0xC000, 0x0001, 0x7FC0),
        "F64": struct.pack("<4d", 1.0, -2.0, 1e-300, float("nan")),
        "I8": bytes([1, 255, 3, 4]),
        "U8": bytes([1, 2, 3, 4]),
        "F8_E4M3": bytes([0x38, 0xB8, 0x7F, 0x01]),
        "F8_E5M2": bytes([0x3C, 0xBC, 0x7C, 0x01]),
    }
    for dt, data in vals.items():
        h = padded(hdr({"__metadata__": {"format": "pt"}, "x": entry(dt, [2, 2], 0, len(data))}))
        out["valid-" + dt.lower()] = container(h, data)
    out["valid-lokr-module"] = container(padded(hdr({
        "lycoris_a.alpha": entry("F32", [], 0, 4),
        "lycoris_a.lokr_w1": entry("F32", [2, 2], 4, 20),
        "lycoris_a.lokr_w2": entry("F32", [2, 2], 20, 36),
    })), struct.pack("<9f", 4.0, 1, 2, 3, 4, 5, 6, 7, 8))
    return out


def write_dir(d, files):
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name + ".safetensors"), "wb") as fp:
            fp.write(data)


def main():
    assert len(BAD_FILES) >= 25
    odd = odd_files()
    write_dir(BAD, BAD_FILES)
    write_dir(ODD, odd)
    seeds = dict(seed_files())
    seeds.update({"bad-" + k: v for k, v in BAD_FILES.items()})
    seeds.update({"odd-" + k: v for k, v in odd.items()})
    write_dir(SEEDS, seeds)
    print("%d bad, %d odd, %d seeds" % (len(BAD_FILES), len(odd), len(seeds)))


if __name__ == "__main__":
    main()
