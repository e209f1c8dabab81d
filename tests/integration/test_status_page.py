#!/usr/bin/env python3
"""The status page at GET /, rendered by headless Chromium (Debian's
chromium): after its script ran, the DOM shows the base layer count, the
resident adapters, cache use and request counts, all read from /v1/status
(the HTML itself carries no figures).  The page loads nothing from
elsewhere.  Skips (77) when chromium is not installed."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")


def find_chromium():
    for c in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def render(chromium, url, profile, budget_ms):
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--user-data-dir=" + profile, "--virtual-time-budget=%d" % budget_ms,
            "--dump-dom", url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def text_of(dom, elem_id):
    m = re.search(r'id="%s"[^>]*>(.*?)</' % re.escape(elem_id), dom, re.S)
    return m.group(1) if m else None


def main():
    chromium = find_chromium()
    if not chromium:
        print("SKIP: chromium is not installed")
        return L.SKIP
    res = L.Results("status_page")
    ck = res.check
    contract = L.Contract()
    tmp = tempfile.mkdtemp(prefix="lokrd-page-")
    adir = os.path.join(tmp, "adapters")
    os.mkdir(adir)
    for a in ("lora", "lokr_dora"):
        shutil.copy(os.path.join(F, "adapters", a + ".safetensors"), adir)
    d = L.Lokrd(BASE, adir, contract=contract, results=res)
    try:
        page = d.get("/")
        html = page.body.decode()
        ck(page.status == 200 and page.header("Content-Type").startswith("text/html"),
           "GET / is HTML")
        ck("default-src 'none'" in (page.header("Content-Security-Policy") or ""),
           "CSP forbids anything from elsewhere")
        ck(not re.search(r'(src|href)\s*=\s*"(https?:)?//', html) and "@import" not in html,
           "no external assets in the page")
        ck("lokr_dora" not in html and ">8<" not in html,
           "the HTML carries no figures (they come from the script)")
        x = np.ones((3, 64), np.float32)
        for a in ("lokr_dora", "lokr_dora", "lora"):
            ck(d.post("/v1/apply", {"layer": "mid.proj", "adapters": [{"id": a}],
                                    "input": L.tensor_json(x)}).status == 200, "apply %s" % a)
        layers = d.get("/v1/model").json()["count"]
        st = d.get("/v1/status").json()
        ck(st["base"]["layers"] == layers and st["ready"], "/v1/status")

        mark = len(d.logtext())
        rc, dom, err = render(chromium, "http://127.0.0.1:%d/" % d.port,
                              os.path.join(tmp, "profile"), 5000)
        ck(rc == 0 and "<html" in dom, "chromium rendered the page (rc %d; %s)"
           % (rc, err.strip()[-300:]))
        polls = d.logtext()[mark:].count("GET /v1/status 200")
        ck(polls >= 2, "the page's script polled /v1/status (%d times)" % polls)
        ck(text_of(dom, "base-layers") == str(layers),
           "base layer count shown: %r" % text_of(dom, "base-layers"))
        ck(text_of(dom, "state") == "ready", "state shown: %r" % text_of(dom, "state"))
        tbody = re.search(r'<tbody id="adapters">(.*?)</tbody>', dom, re.S)
        shown = re.findall(r"<tr><td>([^<]+)</td>", tbody.group(1)) if tbody else []
        ck(sorted(shown) == ["lokr_dora", "lora"], "resident adapters shown: %s" % shown)
        ck(shown[:1] == ["lora"], "most recently used first: %s" % shown)
        use = text_of(dom, "cache-use") or ""
        ck(re.fullmatch(r"[\d.]+ KiB / 2\.0 GiB", use) is not None, "cache use shown: %r" % use)
        total = text_of(dom, "req-total")
        ck(total is not None and total.isdigit() and int(total) >= 5,
           "request total shown: %r" % total)
        rate = text_of(dom, "req-rate")
        ck(rate is not None and re.fullmatch(r"\d+\.\d", rate) is not None,
           "request rate computed from two polls: %r" % rate)
        routes = re.findall(r"<tr><td>(/[^<]*)</td><td class=\"n\">(\d+)</td>", dom)
        ck(("/v1/apply", "3") in routes, "per-route table shows /v1/apply 3: %s" % routes)
        ck(text_of(dom, "error") == "", "no error shown")
    finally:
        rc = d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ck(rc == 0, "exit 0")
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
