#!/usr/bin/env python3
"""Scale-out without containers: the topology of docker/compose.yaml on
loopback.  Three lokrd processes share one adapter directory behind Debian's
nginx running docker/nginx.conf (upstream and listen addresses rewritten to
127.0.0.1 ports, everything else as shipped).  Requests carry
X-Lokrd-Adapter; every answer names its replica in X-Lokrd-Instance.

- Requests for one adapter always reach the same replica, the adapters are
  spread over the replicas, and each adapter is loaded by one replica only.
- Killing the replica of an adapter (SIGKILL): its adapters are still
  served, loaded on demand by another replica, which then keeps them; the
  other replicas' adapters do not move.

Skips (77) when nginx is not installed."""
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lokrd as L  # noqa: E402
np = L.np

F = L.FIXTURES
BASE = os.path.join(F, "base.safetensors")
SOURCES = ["lora", "loha", "lokr_balanced", "lokr_factor8", "lokr_dora", "lokr_fp16"]
N_IDS = 12  # ids a0..a11, copies of the fixtures: enough to spread over 3 replicas


def find_nginx():
    for c in (os.environ.get("NGINX"), "/usr/sbin/nginx", shutil.which("nginx")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nginx_conf(shipped, prefix, ports, listen_port):
    """docker/nginx.conf for loopback: the same upstream, hashing, retries
    and locations; only addresses, paths and process settings differ."""
    with open(shipped) as f:
        text = f.read()
    servers = re.findall(r"^\s*server lokrd-\d+:8080[^;]*;", text, re.M)
    if len(servers) != 3:
        raise RuntimeError("docker/nginx.conf: expected 3 upstream servers, found %d"
                           % len(servers))
    for line, port in zip(servers, ports):
        text = text.replace(line, re.sub(r"lokrd-\d+:8080", "127.0.0.1:%d" % port, line), 1)
    if "listen 8080;" not in text:
        raise RuntimeError("docker/nginx.conf: no 'listen 8080;'")
    text = text.replace("listen 8080;", "listen 127.0.0.1:%d;" % listen_port)
    head = ("daemon off;\nmaster_process on;\npid %s/nginx.pid;\nerror_log %s/error.log info;\n"
            % (prefix, prefix))
    if os.geteuid() == 0:
        head += "user root root;\n"
    text = head + text
    temps = "".join("    %s_temp_path %s/%s;\n" % (t, prefix, t)
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = re.sub(r"^http \{\n", "http {\n    access_log %s/access.log;\n%s" % (prefix, temps),
                  text, count=1, flags=re.M)
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


class Proxy:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return L.Response(r.status, r.getheaders(), r.read())
        finally:
            c.close()


def apply_via(proxy, aid, x):
    import json
    body = json.dumps({"layer": "mid.proj", "adapters": [{"id": aid}],
                       "input": L.tensor_json(x)}).encode()
    return proxy.request("POST", "/v1/apply", body,
                         {"Content-Type": "application/json", "X-Lokrd-Adapter": aid})


def loaded_ids(d):
    """Adapters this replica loaded, from its log."""
    return set(re.findall(r"loaded adapter (\S+):", d.logtext()))


def wait_loaded(d, aid, timeout=5.0):
    """The log is read by a thread and the load line may trail the answer."""
    deadline = time.time() + timeout
    while aid not in loaded_ids(d) and time.time() < deadline:
        time.sleep(0.02)
    return aid in loaded_ids(d)


def main():
    nginx = find_nginx()
    if not nginx:
        print("SKIP: nginx is not installed")
        return L.SKIP
    res = L.Results("scaleout")
    ck = res.check
    contract = L.Contract()
    tmp = tempfile.mkdtemp(prefix="lokrd-scale-")
    os.chmod(tmp, 0o755)  # nginx workers may run as another user
    adir = os.path.join(tmp, "adapters")
    os.mkdir(adir)
    ids = ["a%d" % i for i in range(N_IDS)]
    for i, aid in enumerate(ids):
        shutil.copy(os.path.join(F, "adapters", SOURCES[i % len(SOURCES)] + ".safetensors"),
                    os.path.join(adir, aid + ".safetensors"))
    replicas = []
    ngx = None
    try:
        for _ in range(3):
            replicas.append(L.Lokrd(BASE, adir, extra=["--threads", "1"], contract=contract,
                                    results=res))
        by_inst = {"%s" % d.get("/healthz").header("X-Lokrd-Instance"): d for d in replicas}
        ck(len(by_inst) == 3, "three distinct X-Lokrd-Instance values: %s" % list(by_inst))
        prefix = os.path.join(tmp, "nginx")
        os.mkdir(prefix)
        listen = free_port()
        conf = nginx_conf(os.path.join(L.TOP_SRCDIR, "docker", "nginx.conf"), prefix,
                          [d.port for d in replicas], listen)
        t = subprocess.run([nginx, "-t", "-p", prefix, "-c", conf, "-e",
                            os.path.join(prefix, "error.log")], capture_output=True, text=True)
        ck(t.returncode == 0, "nginx -t accepts the derived config: %s" % t.stderr.strip())
        ngx = subprocess.Popen([nginx, "-p", prefix, "-c", conf, "-e",
                                os.path.join(prefix, "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        proxy = Proxy(listen)

        x = np.linspace(-1, 1, 192, dtype=np.float32).reshape(3, 64)
        want = {}
        home = {}
        for aid in ids:
            seen = set()
            for _ in range(4):
                r = apply_via(proxy, aid, x)
                ck(r.status == 200, "apply %s through nginx: %d" % (aid, r.status))
                seen.add(r.header("X-Lokrd-Instance"))
                if r.status == 200:
                    want.setdefault(aid, L.tensor_from_json(r.json()["output"]))
            ck(len(seen) == 1 and None not in seen,
               "every request for %s reached one replica: %s" % (aid, seen))
            home[aid] = next(iter(seen))
        used = set(home.values())
        ck(len(used) >= 2, "the adapters are spread over the replicas: %s" % sorted(used))
        for aid in ids:
            if home[aid] in by_inst:
                wait_loaded(by_inst[home[aid]], aid)
        loads = {inst: loaded_ids(d) for inst, d in by_inst.items()}
        for aid in ids:
            where = [inst for inst, s in loads.items() if aid in s]
            ck(where == [home[aid]], "%s loaded by its replica only: %s" % (aid, where))

        # Kill the replica of a0.
        victim = home[ids[0]]
        moved = [a for a in ids if home[a] == victim]
        stay = [a for a in ids if home[a] != victim]
        vd = by_inst.pop(victim)
        vd.proc.send_signal(signal.SIGKILL)
        vd.proc.wait(10)
        new_home = {}
        for aid in moved:
            seen = set()
            for _ in range(3):
                r = apply_via(proxy, aid, x)
                ck(r.status == 200, "%s after its replica died: %d %s" % (aid, r.status,
                                                                         r.body[:200]))
                seen.add(r.header("X-Lokrd-Instance"))
                if r.status == 200:
                    ck(L.rel(L.tensor_from_json(r.json()["output"]), want[aid]) < 1e-6,
                       "%s: same answer from the new replica" % aid)
            ck(len(seen) == 1 and victim not in seen and None not in seen,
               "%s now served by one other replica: %s" % (aid, seen))
            new_home[aid] = next(iter(seen))
            inst = new_home[aid]
            ck(inst in by_inst and wait_loaded(by_inst[inst], aid),
               "%s loaded on demand by %s" % (aid, inst))
        for aid in stay:
            r = apply_via(proxy, aid, x)
            ck(r.status == 200 and r.header("X-Lokrd-Instance") == home[aid],
               "%s stays on its replica %s (%s)" % (aid, home[aid],
                                                    r.header("X-Lokrd-Instance")))
        for inst, d in by_inst.items():
            text = d.get("/metrics").body.decode()
            m = re.search(r'^lokrd_adapter_residency\{[^}]*running_adapters="([^"]*)"', text,
                          re.M)
            resident = set(m.group(1).split(",")) if m and m.group(1) else set()
            mine = {a for a in ids if home[a] == inst} | {a for a in moved
                                                          if new_home.get(a) == inst}
            ck(resident == mine, "%s keeps exactly its adapters warm: %s vs %s"
               % (inst, sorted(resident), sorted(mine)))
    finally:
        if ngx:
            ngx.send_signal(signal.SIGQUIT)
            try:
                ngx.wait(10)
            except subprocess.TimeoutExpired:
                ngx.kill()
        for d in replicas:
            rc = d.stop()
            if d.proc.returncode != -signal.SIGKILL:
                ck(rc == 0, "replica exit 0")
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
