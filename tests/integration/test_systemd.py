#!/usr/bin/env python3
"""systemd integration without systemd: a fake NOTIFY_SOCKET receives
READY=1, STOPPING=1, WATCHDOG=1 and the base segment (FDSTORE=1 with the
memfd attached); a restart that is handed the stored fd (LISTEN_FDS /
LISTEN_FDNAMES=lokrd-base, as systemd does) maps it instead of loading the
files, and a stored segment whose base files changed is not used."""
import array
import os
import socket
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np


class Notify:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.fds = []

    def pump(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            try:
                msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
            except socket.timeout:
                continue
            self.msgs.append(msg.decode())
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(data[:len(data) - len(data) % a.itemsize])
                    self.fds.extend(a)

    def has(self, text):
        return any(text in m for m in self.msgs)


def start(base, adir, env, pass_fd=None, contract=None, res=None):
    """lokrd, optionally with `pass_fd` as fd 3 named lokrd-base (LISTEN_PID
    is the pid of the exec'd process: the shell execs lokrd)."""
    e = dict(env)
    if pass_fd is None:
        return L.Lokrd(base, adir, env=e, contract=contract, results=res)
    e.update(LISTEN_FDS="1", LISTEN_FDNAMES="lokrd-base")
    real = L.LOKRD
    shim = os.path.join(os.path.dirname(adir), "shim.sh")
    with open(shim, "w") as f:
        f.write('#!/bin/sh\nexport LISTEN_PID=$$\nexec 3<&%d\nexec %s "$@"\n' % (pass_fd, real))
    os.chmod(shim, 0o755)
    L.LOKRD = shim
    orig = subprocess.Popen

    def popen(*a, **kw):
        kw["pass_fds"] = (pass_fd,)
        return orig(*a, **kw)
    subprocess.Popen = popen
    try:
        return L.Lokrd(base, adir, env=e, contract=contract, results=res)
    finally:
        subprocess.Popen = orig
        L.LOKRD = real


def main():
    res = L.Results("systemd")
    ck = res.check
    tmp = tempfile.mkdtemp(prefix="lokrd-sd-")
    try:
        base = os.path.join(tmp, "base.safetensors")
        shutil.copy(os.path.join(L.FIXTURES, "base.safetensors"), base)
        adir = os.path.join(tmp, "adapters")
        os.mkdir(adir)
        shutil.copy(os.path.join(L.FIXTURES, "adapters", "lora.safetensors"), adir)
        n = Notify(os.path.join(tmp, "notify"))
        env = {"NOTIFY_SOCKET": os.path.join(tmp, "notify")}
        contract = L.Contract()
        x = np.linspace(-1, 1, 128, dtype=np.float32).reshape(2, 64)
        req = {"layer": "mid.proj", "adapters": [{"id": "lora"}], "input": L.tensor_json(x)}

        d = start(base, adir, env, contract=contract, res=res)
        y1 = d.post("/v1/apply", req).json()["output"]
        n.pump(0.5)
        ck(n.has("READY=1"), "READY=1 (%s)" % n.msgs)
        ck(n.has("FDSTORE=1") and n.has("FDNAME=lokrd-base") and len(n.fds) == 1,
           "base segment sent to the fd store (%s, fds %s)" % (n.msgs, n.fds))
        ck(d.stop() == 0, "exit 0")
        n.pump(0.3)
        ck(n.has("STOPPING=1"), "STOPPING=1")
        if not n.fds:
            return res.finish()
        fd = n.fds[0]
        seals = __import__("fcntl").fcntl(fd, 1034)  # F_GET_SEALS
        ck(seals & 0xF == 0xF, "stored segment is sealed (%#x)" % seals)

        # restart: the stored segment is mapped, not reloaded
        n.msgs.clear()
        d = start(base, adir, dict(env, WATCHDOG_USEC="200000"), pass_fd=fd,
                  contract=contract, res=res)
        d.proc  # noqa: B018
        y2 = d.post("/v1/apply", req).json()["output"]
        n.pump(0.6)
        ck("re-attached from systemd's fd store" in d.logtext(),
           "restart re-attaches the stored segment")
        ck(y1 == y2, "same answers after re-attaching")
        ck(not n.has("FDSTORE=1"), "a re-attached segment is not stored twice")
        ck(d.stop() == 0, "exit 0 after re-attach")

        # watchdog pings when WATCHDOG_PID is this process
        n.msgs.clear()
        wd_env = dict(env, WATCHDOG_USEC="200000")
        shim = os.path.join(tmp, "wd.sh")
        with open(shim, "w") as f:
            f.write('#!/bin/sh\nexport WATCHDOG_PID=$$\nexec %s "$@"\n' % L.LOKRD)
        os.chmod(shim, 0o755)
        real = L.LOKRD
        L.LOKRD = shim
        try:
            d = L.Lokrd(base, adir, env=wd_env, contract=contract, results=res)
        finally:
            L.LOKRD = real
        n.pump(0.8)
        ck(sum("WATCHDOG=1" in m for m in n.msgs) >= 3, "WATCHDOG=1 pings (%d)" % sum(
            "WATCHDOG=1" in m for m in n.msgs))
        ck(d.stop() == 0, "exit 0 (watchdog run)")

        # the base files changed: the stored segment is not trusted
        time.sleep(0.01)
        os.utime(base)
        n.msgs.clear()
        d = start(base, adir, env, pass_fd=fd, contract=contract, res=res)
        y3 = d.post("/v1/apply", req).json()["output"]
        ck("stored base segment not used" in d.logtext() and "base loaded" in d.logtext(),
           "changed base files: stored segment discarded, files loaded")
        ck(y3 == y1, "same answers after reloading")
        n.pump(0.3)
        ck(n.has("FDSTORE=1"), "the new segment is stored")
        ck(d.stop() == 0, "exit 0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
