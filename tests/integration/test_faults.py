#!/usr/bin/env python3
"""Faults against the real lokrd (issue 6):
- SIGKILL during PUT, repeated (LOKRD_FAULT_KILLS, default 50): after each
  kill lokrd restarts and every adapter visible is whole: the replaced one
  is the old or the new version (exact apply output), a created one is
  absent or whole, the listing has no error entries;
- a full disk (a small tmpfs, root only; skipped otherwise): 507
  insufficient_storage, the previous adapter intact, nothing partial left;
- --workers 2: a worker killed with SIGKILL is replaced and requests keep
  being answered;
- 1,000 idle connections (RLIMIT_NOFILE raised here): /healthz still
  answers promptly, on a new connection."""
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")
OLD = os.path.join(F, "adapters", "lokr_balanced.safetensors")
NEW = os.path.join(F, "adapters", "lora.safetensors")
OCT = {"Content-Type": "application/octet-stream"}
X = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)


def apply_out(d, aid):
    r = d.post("/v1/apply", {"layer": "mid.proj", "adapters": [{"id": aid}],
                             "input": L.tensor_json(X)}, check=False)
    return r.status, (r.json()["output"]["data"] if r.status == 200 else None)


def kill_during_put(res, tmp):
    ck = res.check
    n = int(os.environ.get("LOKRD_FAULT_KILLS", "50"))
    adir = os.path.join(tmp, "kill")
    os.mkdir(adir)
    shutil.copy(OLD, os.path.join(adir, "victim.safetensors"))
    shutil.copy(NEW, os.path.join(adir, "newsrc.safetensors"))
    d = L.Lokrd(BASE, adir, extra=["--threads", "1"])
    _, ref_old = apply_out(d, "victim")
    _, ref_new = apply_out(d, "newsrc")
    d.stop()
    os.unlink(os.path.join(adir, "newsrc.safetensors"))
    bodies = {"old": open(OLD, "rb").read(), "new": open(NEW, "rb").read()}
    rng = random.Random(6)
    outcomes = {"kept": 0, "replaced": 0, "absent": 0, "whole": 0}
    bad = []
    cur, put_what = "old", None
    for i in range(n):
        d = L.Lokrd(BASE, adir, extra=["--threads", "1"])
        # Check what the previous kill left: the victim is the version it
        # had or the one being PUT, nothing else.
        st, out = apply_out(d, "victim")
        now = "old" if out == ref_old else "new" if out == ref_new else None
        if now is None:
            bad.append("round %d: victim %d" % (i, st))
        elif put_what is not None:
            outcomes["replaced" if now == put_what and now != cur else "kept"] += 1
        cur = now or cur
        if i % 2 == 0 and i > 0:
            st, out = apply_out(d, "fresh%d" % (i - 1))
            if st == 404:
                outcomes["absent"] += 1
            elif st == 200 and out == ref_new:
                outcomes["whole"] += 1
            else:
                bad.append("round %d: fresh%d %d" % (i, i - 1, st))
        lst = d.get("/v1/adapters", check=False).json()["adapters"]
        errs = [a["id"] for a in lst if a.get("error")]
        if errs:
            bad.append("round %d: listing errors %s" % (i, errs))
        # A PUT (replace or create), killed at a random point: while the
        # body is on its way, or after it (validation, rename, fsync).
        aid = "victim" if i % 2 == 0 else "fresh%d" % i
        put_what = ("new" if cur == "old" else "old") if aid == "victim" else None
        body = bodies[put_what or "new"]
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(("PUT /v1/adapters/%s HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   "application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (aid, len(body))).encode())
        cut = rng.choice([rng.randrange(len(body)), len(body), len(body)])
        s.sendall(body[:cut])
        time.sleep(rng.random() * 0.01)
        d.proc.kill()
        d.proc.wait()
        s.close()
    d = L.Lokrd(BASE, adir, extra=["--threads", "1"])
    st, out = apply_out(d, "victim")
    ck(out in (ref_old, ref_new), "after the last kill: victim whole (%d)" % st)
    d.stop()
    ck(not bad, "%d kills during PUT: every visible adapter whole (%s)" % (n, bad[:5]))
    temps = [f for f in os.listdir(adir) if f.startswith(".put-")]
    ck(not temps, "upload files of killed PUTs removed at restart (%s)" % temps[:3])
    print("  %d SIGKILLs during PUT: replaced adapter kept %d / replaced %d, created adapter "
          "absent %d / whole %d; %d upload files left after restart" % (
              n, outcomes["kept"], outcomes["replaced"], outcomes["absent"], outcomes["whole"],
              len(temps)))
    ck(outcomes["kept"] > 0 and outcomes["replaced"] > 0,
       "kills hit both before and after the rename")


def disk_full(res, tmp):
    ck = res.check
    mnt = os.path.join(tmp, "small")
    os.mkdir(mnt)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", mnt],
                                           capture_output=True).returncode != 0:
        print("  note: disk full not checked: cannot mount a small tmpfs here")
        return
    try:
        d = L.Lokrd(BASE, mnt)
        small = open(OLD, "rb").read()       # 11.5 KB
        big = open(os.path.join(F, "adapters", "loha.safetensors"), "rb").read()  # 22 KB
        ck(d.request("PUT", "/v1/adapters/first", body=small, headers=OCT).status == 201, "first fits")
        _, ref = apply_out(d, "first")
        n507 = 0
        for i in range(8):  # fill until the disk says no
            r = d.request("PUT", "/v1/adapters/fill%d" % i, body=big, headers=OCT, check=False)
            if r.status == 507:
                n507 += 1
                ck(r.code == "insufficient_storage", "507 code insufficient_storage")
        ck(n507 > 0, "a full disk answers 507 (%d times)" % n507)
        r = d.request("PUT", "/v1/adapters/first", body=big, headers=OCT, check=False)
        ck(r.status == 507, "replacing on a full disk: 507 (%d)" % r.status)
        st, out = apply_out(d, "first")
        ck(st == 200 and out == ref, "previous adapter intact after 507")
        ck(not [f for f in os.listdir(mnt) if f.startswith(".put-")], "no temp file left on the full disk")
        lst = d.get("/v1/adapters", check=False).json()["adapters"]
        ck(all(not a.get("error") for a in lst), "every listed adapter valid")
        ck(d.get("/healthz").status == 200, "healthz on a full disk")
        ck(d.stop() == 0, "exit 0")
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def worker_crash(res, tmp):
    ck = res.check
    adir = os.path.join(tmp, "workers")
    os.mkdir(adir)
    shutil.copy(OLD, adir)
    d = L.Lokrd(BASE, adir, extra=["--workers", "2", "--threads", "1"])
    try:
        deadline = time.time() + 20
        while len(children(d.proc.pid)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        kids = children(d.proc.pid)
        ck(len(kids) == 2, "two workers (%s)" % kids)
        stop = threading.Event()
        fails = []

        def load():
            while not stop.is_set():
                try:
                    st, _ = apply_out(d, "lokr_balanced")
                    if st != 200:
                        fails.append(st)
                except OSError as e:  # the killed worker's connection
                    fails.append(str(e))
        t = threading.Thread(target=load)
        t.start()
        time.sleep(0.3)
        os.kill(kids[0], signal.SIGKILL)
        deadline = time.time() + 20
        while time.time() < deadline:
            k = children(d.proc.pid)
            if len(k) == 2 and kids[0] not in k:
                break
            time.sleep(0.05)
        k = children(d.proc.pid)
        ck(len(k) == 2 and kids[0] not in k, "the killed worker was replaced (%s -> %s)" % (kids, k))
        time.sleep(0.5)
        n_before = len(fails)
        time.sleep(0.5)
        stop.set()
        t.join()
        ck(len(fails) == n_before, "requests answered after the replacement (%s)" % fails[n_before:][:3])
        ok = sum(apply_out(d, "lokr_balanced")[0] == 200 for _ in range(20))
        ck(ok == 20, "20 requests after the crash: 200 (%d)" % ok)
        print("  worker crash: %d requests failed around the kill (connections to the dead worker)"
              % n_before)
    finally:
        ck(d.stop() == 0, "workers exit 0")


def idle_connections(res, tmp):
    ck = res.check
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1000 + 200
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
        except (ValueError, OSError):
            pass
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        print("  note: 1000 idle connections not checked: RLIMIT_NOFILE hard limit %d" % hard)
        return
    adir = os.path.join(tmp, "idle")
    os.mkdir(adir)
    d = L.Lokrd(BASE, adir)
    socks = []
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            if i % 4 == 1:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # half a request
            elif i % 4 == 2:
                s.sendall(b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            socks.append(s)
        times = []
        for _ in range(10):
            t0 = time.time()
            r = d.get("/healthz", check=False)
            times.append(time.time() - t0)
            ck(r.status == 200, "healthz beside 1000 idle connections")
        st, _ = apply_out(d, "nothere")
        ck(st == 404, "a real request beside them (404 for an unknown adapter)")
        worst = max(times)
        print("  1000 idle connections: healthz worst %.1f ms, median %.1f ms" %
              (worst * 1e3, sorted(times)[5] * 1e3))
        ck(worst < 0.5, "healthz within 500 ms (worst %.1f ms)" % (worst * 1e3))
    finally:
        for s in socks:
            s.close()
        ck(d.stop() == 0, "exit 0 after the idle connections")


def main():
    res = L.Results("faults")
    tmp = tempfile.mkdtemp(prefix="lokrd-faults-")
    try:
        idle_connections(res, tmp)
        disk_full(res, tmp)
        worker_crash(res, tmp)
        kill_during_put(res, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
