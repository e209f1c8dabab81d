#!/usr/bin/env python3
"""GET /metrics parsed strictly as the Prometheus text format 0.0.4 (a parser
written here from the format's rules, plus prometheus_client's own parser
when python3-prometheus-client is installed), then checked against what the
test did: requests and latency by route and status, batch sizes, queue
depth, adapter cache hits/misses/loads/evictions, load latency, resident
bytes in total and per tenant, base bytes, and the adapter-residency gauge
in lokrd's and in vLLM's names (serving-anchors.md 2.15)."""
import math
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")
ADAPTERS = ["lora", "loha", "lokr_balanced", "lokr_dora"]

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(Exception):
    pass


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise FormatError("bad value %r" % s)
    return float(s)


def parse_labels(s, i, lineno):
    """s[i] == '{'; return (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise FormatError("line %d: bad label name at %r" % (lineno, s[i:]))
        name = m.group(0)
        if name.startswith("__"):
            raise FormatError("line %d: reserved label name %s" % (lineno, name))
        i = m.end()
        if s[i:i + 2] != '="':
            raise FormatError("line %d: expected =\" after %s" % (lineno, name))
        i += 2
        val = []
        while s[i] != '"':
            if s[i] == "\\":
                esc = s[i + 1]
                if esc not in '\\"n':
                    raise FormatError("line %d: bad escape \\%s" % (lineno, esc))
                val.append("\n" if esc == "n" else esc)
                i += 2
            elif s[i] == "\n":
                raise FormatError("line %d: newline in a label value" % lineno)
            else:
                val.append(s[i])
                i += 1
        i += 1
        if name in labels:
            raise FormatError("line %d: duplicate label %s" % (lineno, name))
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise FormatError("line %d: expected , or } at %r" % (lineno, s[i:]))


def family_of(sample, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix) and types.get(sample[:-len(suffix)]) == "histogram":
            return sample[:-len(suffix)]
    return sample


def parse_strict(text):
    """Return {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    if not text.endswith("\n"):
        raise FormatError("the exposition must end with a newline")
    fams = {}
    types = {}
    order = []
    seen = set()
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        if line == "":
            raise FormatError("line %d: empty line" % lineno)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise FormatError("line %d: bad metric name %r" % (lineno, name))
                f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                if parts[1] == "TYPE":
                    if f["type"] is not None or f["samples"]:
                        raise FormatError("line %d: TYPE of %s repeated or after samples"
                                          % (lineno, name))
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise FormatError("line %d: bad TYPE line" % lineno)
                    f["type"] = types[name] = parts[3]
                else:
                    if f["help"] is not None:
                        raise FormatError("line %d: HELP of %s repeated" % (lineno, name))
                    f["help"] = parts[3] if len(parts) == 4 else ""
                if not order or order[-1] != name:
                    if name in order:
                        raise FormatError("line %d: family %s is not contiguous" % (lineno, name))
                    order.append(name)
            continue
        m = NAME.match(line)
        if not m:
            raise FormatError("line %d: bad sample %r" % (lineno, line))
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line + "\n", i, lineno)
        rest = line[i:]
        if not rest.startswith(" "):
            raise FormatError("line %d: expected a space before the value" % lineno)
        fields = rest[1:].split(" ")
        if len(fields) not in (1, 2) or (len(fields) == 2 and not re.fullmatch(r"-?\d+",
                                                                               fields[1])):
            raise FormatError("line %d: bad value/timestamp %r" % (lineno, rest))
        value = parse_value(fields[0])
        fam = family_of(name, types)
        if fam not in fams or fams[fam]["type"] is None:
            raise FormatError("line %d: sample %s before its TYPE" % (lineno, name))
        if order[-1] != fam:
            raise FormatError("line %d: family %s is not contiguous" % (lineno, fam))
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise FormatError("line %d: duplicate series %s%s" % (lineno, name, labels))
        seen.add(key)
        fams[fam]["samples"].append((name, labels, value))
    for name, f in fams.items():
        if f["type"] == "counter":
            for s, _, v in f["samples"]:
                if s != name or v < 0 or not name.endswith("_total"):
                    raise FormatError("counter %s: sample %s = %s" % (name, s, v))
        if f["type"] == "histogram":
            check_histogram(name, f["samples"])
    return fams


def check_histogram(name, samples):
    groups = {}
    for s, labels, v in samples:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if s == name + "_bucket":
            if "le" not in labels:
                raise FormatError("%s_bucket without le" % name)
            g["buckets"].append((parse_value(labels["le"]), v))
        elif s == name + "_sum":
            g["sum"] = v
        elif s == name + "_count":
            g["count"] = v
        else:
            raise FormatError("histogram %s: stray sample %s" % (name, s))
    for rest, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise FormatError("histogram %s%s: no +Inf bucket" % (name, rest))
        if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
            raise FormatError("histogram %s%s: le not ascending" % (name, rest))
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            raise FormatError("histogram %s%s: buckets not cumulative" % (name, rest))
        if g["count"] is None or g["sum"] is None or b[-1][1] != g["count"]:
            raise FormatError("histogram %s%s: +Inf bucket != _count" % (name, rest))


def value(fams, family, sample=None, **labels):
    f = fams.get(family)
    if not f:
        return None
    for s, lab, v in f["samples"]:
        if s == (sample or family) and all(lab.get(k) == x for k, x in labels.items()):
            return v
    return None


def labels_of(fams, family):
    f = fams.get(family)
    return f["samples"][0][1] if f and f["samples"] else None


def self_test(res):
    """The parser itself refuses broken expositions."""
    ck = res.check
    good = "# TYPE a counter\na_total 1\n"
    bad = [
        "# TYPE a_total counter\na_total 1",                      # no final newline
        "a_total 1\n",                                            # no TYPE
        "# TYPE a_total counter\na_total{x=\"1} 1\n",              # unterminated label
        "# TYPE a gauge\na{x=\"\\q\"} 1\n",                        # bad escape
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",         # not contiguous
        "# TYPE a gauge\na 1\na 1\n",                              # duplicate series
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n"
        "h_count 1\n",                                            # not cumulative
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
        "# TYPE a gauge\na one\n",                                # bad value
    ]
    try:
        parse_strict("# TYPE a_total counter\na_total 1\n")
        ok = True
    except FormatError:
        ok = False
    ck(ok, "strict parser accepts a good exposition")
    del good
    for b in bad:
        try:
            parse_strict(b)
            ck(False, "strict parser refuses %r" % b)
        except FormatError:
            ck(True, "")
        except (IndexError, KeyError) as e:
            ck(False, "strict parser crashed on %r: %r" % (b, e))


def main():
    res = L.Results("ops_metrics")
    ck = res.check
    self_test(res)
    contract = L.Contract()
    tmp = tempfile.mkdtemp(prefix="lokrd-metrics-")
    adir = os.path.join(tmp, "adapters")
    os.mkdir(adir)
    for a in ADAPTERS:
        shutil.copy(os.path.join(F, "adapters", a + ".safetensors"), adir)
    # A cache that holds about two of these adapters, so one is evicted.
    d = L.Lokrd(BASE, adir, extra=["--cache-bytes", "80K", "--threads", "2"],
                contract=contract, results=res)
    try:
        fams = parse_strict(d.get("/metrics").body.decode())
        ck(value(fams, "lokrd_adapters_resident") == 0, "nothing resident at start")
        ck(value(fams, "lokrd_tenant_adapter_resident_bytes", tenant="default") == 0,
           "tenant \"default\" series exists from the start")
        x = np.linspace(-1, 1, 128, dtype=np.float32).reshape(2, 64)
        n_apply = 0
        for a in ADAPTERS + ADAPTERS[:2]:
            r = d.post("/v1/apply", {"layer": "mid.proj", "adapters": [{"id": a}],
                                     "input": L.tensor_json(x)})
            ck(r.status == 200, "apply %s" % a)
            n_apply += 1
        ck(d.post("/v1/apply", {"layer": "mid.proj", "adapters": [{"id": "nope"}],
                                "input": L.tensor_json(x)}).status == 404, "unknown adapter")
        ck(d.get("/v1/nothing", check=False).status == 404, "unknown route")
        model = d.get("/v1/model").json()
        listing = d.get("/v1/adapters").json()["adapters"]
        resident = sorted(a["id"] for a in listing if a["resident"])

        text = d.get("/metrics").body.decode()
        try:
            fams = parse_strict(text)
            ck(True, "")
        except FormatError as e:
            ck(False, "strict parse: %s" % e)
            return res.finish()
        try:
            from prometheus_client.parser import text_string_to_metric_families
            names = {f.name for f in text_string_to_metric_families(text)}
            ck("lokrd_adapter_residency" in names and "lokrd_http_request_duration_seconds"
               in names, "prometheus_client parses it too")
        except ImportError:
            print("note: python3-prometheus-client not installed; strict parser only")

        v = value(fams, "lokrd_http_requests_total", route="/v1/apply", status="200")
        ck(v == n_apply, "requests_total{/v1/apply,200} == %d (%s)" % (n_apply, v))
        ck(value(fams, "lokrd_http_requests_total", route="/v1/apply", status="404") == 1,
           "requests_total{/v1/apply,404} == 1")
        ck(value(fams, "lokrd_http_requests_total", route="other", status="404") == 1,
           "requests_total{other,404} == 1")
        ck(value(fams, "lokrd_http_request_duration_seconds",
                 "lokrd_http_request_duration_seconds_count", route="/v1/apply") == n_apply + 1,
           "latency histogram count for /v1/apply")
        ck(fams["lokrd_http_request_duration_seconds"]["type"] == "histogram", "latency type")
        bs = value(fams, "lokrd_batch_size", "lokrd_batch_size_count")
        bsum = value(fams, "lokrd_batch_size", "lokrd_batch_size_sum")
        ck(bs is not None and bs >= 1 and bsum == n_apply,
           "batch size histogram: %s batches, %s requests" % (bs, bsum))
        ck(value(fams, "lokrd_queue_depth") == 0, "queue depth 0 when idle")
        loads = value(fams, "lokrd_adapter_loads_total")
        misses = value(fams, "lokrd_adapter_cache_misses_total")
        hits = value(fams, "lokrd_adapter_cache_hits_total")
        ck(loads >= len(ADAPTERS) and misses >= len(ADAPTERS),
           "loads %s, misses %s" % (loads, misses))
        ck(hits is not None and hits + misses >= n_apply, "hits %s" % hits)
        ck(value(fams, "lokrd_adapter_load_seconds", "lokrd_adapter_load_seconds_count") == loads,
           "load latency histogram counts every load")
        ev = value(fams, "lokrd_adapter_evictions_total")
        ck(ev is not None and ev >= 1, "an eviction under an 80K budget (%s)" % ev)
        rb = value(fams, "lokrd_adapter_resident_bytes")
        ck(rb is not None and rb > 0 and (rb <= 80 * 1024 or len(resident) == 1),
           "resident bytes within the budget, or one adapter kept (%s, %s)" % (rb, resident))
        ck(value(fams, "lokrd_tenant_adapter_resident_bytes", tenant="default") == rb,
           "per-tenant resident bytes (default) == total")
        ck(value(fams, "lokrd_tenant_adapters_resident", tenant="default") == len(resident),
           "per-tenant resident adapters")
        ck(value(fams, "lokrd_base_bytes") == model["bytes"], "base bytes == /v1/model bytes")
        lab = labels_of(fams, "lokrd_adapter_residency")
        ck(lab is not None and sorted(filter(None, lab["running_adapters"].split(","))) ==
           resident and lab["waiting_adapters"] == "",
           "residency labels list the resident adapters %s: %s" % (resident, lab))
        ck(value(fams, "lokrd_adapter_residency") == len(resident), "residency value")
        ck(lab is not None and int(lab["max_adapters"]) >= len(resident), "max_adapters")
        vl = labels_of(fams, "vllm:lora_requests_info")
        ck(vl is not None and set(vl) == {"max_lora", "running_lora_adapters",
                                          "waiting_lora_adapters"} and
           vl["running_lora_adapters"] == lab["running_adapters"] and
           vl["max_lora"] == lab["max_adapters"],
           "vllm:lora_requests_info mirrors the residency labels: %s" % vl)
        vv = value(fams, "vllm:lora_requests_info")
        ck(vv is not None and abs(vv - time.time()) < 60, "vllm gauge value is a timestamp")
        for fam in ("vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                    "lokrd_adapter_cache_utilization", "lokrd_ready", "lokrd_http_connections",
                    "lokrd_config_reloads_total", "lokrd_start_time_seconds"):
            ck(fam in fams, "family %s present" % fam)
        util = value(fams, "lokrd_adapter_cache_utilization")
        ck(util is not None and abs(util - rb / (80 * 1024)) < 1e-4, "cache utilization")
    finally:
        rc = d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ck(rc == 0, "exit 0")
    tenants(res, contract)
    return res.finish()


def tenants(res, contract):
    """With tenants configured: resident bytes per tenant name, ids in the
    residency gauge as tenant/id, /metrics behind an admin token."""
    import json
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-metrics-t-")
    adir = os.path.join(tmp, "adapters")
    for t in ("alpha", "beta"):
        os.makedirs(os.path.join(adir, t))
    shutil.copy(os.path.join(F, "adapters", "lora.safetensors"),
                os.path.join(adir, "alpha", "one.safetensors"))
    admin = "admin-token-0123456789"
    cfg = os.path.join(tmp, "c.json")
    with open(cfg, "w") as f:
        json.dump({"tenants": {"alpha": {"tokens": ["alpha-token-0123456789"]},
                               "beta": {"tokens": ["beta-token-01234567890"]}},
                   "admin_tokens": [admin]}, f)
    d = L.Lokrd(BASE, adir, extra=["--config", cfg], contract=contract, results=res)
    try:
        x = np.ones((1, 64), np.float32)
        r = d.post("/v1/apply", {"layer": "mid.proj", "adapters": [{"id": "one"}],
                                 "input": L.tensor_json(x)},
                   headers={"Authorization": "Bearer alpha-token-0123456789"})
        ck(r.status == 200, "tenant alpha applies its adapter (%d)" % r.status)
        ck(d.get("/metrics", check=False).status == 401, "/metrics needs a token with tenants")
        text = d.get("/metrics", headers={"Authorization": "Bearer " + admin}).body.decode()
        try:
            fams = parse_strict(text)
        except FormatError as e:
            ck(False, "strict parse (tenants): %s" % e)
            return
        a = value(fams, "lokrd_tenant_adapter_resident_bytes", tenant="alpha")
        b = value(fams, "lokrd_tenant_adapter_resident_bytes", tenant="beta")
        ck(a is not None and a > 0 and a == value(fams, "lokrd_adapter_resident_bytes"),
           "alpha's resident bytes == the total (%s)" % a)
        ck(b == 0, "beta has nothing resident (%s)" % b)
        ck(value(fams, "lokrd_tenant_adapters_resident", tenant="alpha") == 1,
           "alpha has one resident adapter")
        lab = labels_of(fams, "lokrd_adapter_residency")
        ck(lab is not None and lab["running_adapters"] == "alpha/one",
           "residency ids are tenant/id: %s" % lab)
    finally:
        ck(d.stop() == 0, "tenants daemon exit 0")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
