"""Benchmark: our metadata server vs nginx, served from inside a node namespace.

    sudo .venv/bin/python bench/metadata.py [--duration 5] [--connections 10] [--rounds 1]
    sudo .venv/bin/python bench/metadata.py load [--duration 30] [--nodes 100] [--quick] ...

Builds a node namespace (br0 = 169.254.169.254/16) and one client namespace, then runs
``wrk`` inside the client against ``/metadata/v1/maintenance`` served by (1) our server
and (2) nginx (Debian-default-like static setup: 1 worker, sendfile on, tcp_nopush on,
access_log off) serving the same bytes as a static file. Each is loaded with keep-alive
and with ``Connection: close``. Prints req/s and the ratio ours / nginx (goal >= 0.60,
measured-anchors section 2). Every namespace and process it starts is removed by PID /
by name at the end; no traffic leaves the namespaces.

Part 2, ``load``: a real datacenter (100 nodes x 10 VMs by default) whose every VM polls
its node's metadata server at 5 req/s; see ``bench/metadata_load.py`` (``load --help``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from netsim.kernel import netns
from netsim_imds.background import ServerThread
from netsim_imds.driver import ServerConfig
from netsim_imds.events import EventStore
from netsim_imds.identity import VmIdentity
from netsim.harness.testbed import METADATA_ADDRESS, Testbed

PATH = "/metadata/v1/maintenance"
URL = f"http://{METADATA_ADDRESS}{PATH}"
BODY = b"{}"

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_requests 1000000;
    default_type application/json;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {addr}:80;
        root {tmp}/www;
        location = {path} {{ }}
    }}
}}
"""


def in_ns(ns: str, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` inside namespace ``ns``."""
    return ["nsenter", f"--net={netns.path_of(ns)}", *argv]


def fetch(bed: Testbed, client: str, headers: str = "") -> tuple[int, bytes]:
    """One GET from inside the client namespace: (status, body)."""
    with bed.connect(client) as sock:
        sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: {METADATA_ADDRESS}\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def wait_ready(bed: Testbed, client: str, timeout: float = 5.0) -> None:
    """Wait until something answers on 169.254.169.254:80 seen from the client."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fetch(bed, client)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wrk(client_ns: str, duration: float, connections: int, close: bool) -> dict:
    """Run wrk in the client namespace; return req/s, non-2xx and socket errors."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    out = subprocess.run(in_ns(client_ns, argv + [URL]), capture_output=True, text=True, timeout=duration + 30)
    text = out.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    return {"rps": float(m.group(1)), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": sum(map(int, errors.groups())) if errors else 0, "p50": p50.group(1) if p50 else "?"}


def run_ours(bed: Testbed, args: argparse.Namespace, results: dict) -> None:
    client = bed.clients["c"]
    vm = VmIdentity("vm1", str(uuid.uuid4()), "n", mac=client.mac, link_local=client.address)
    with ServerThread(ServerConfig()) as st:
        st.add_node("n", bed.node_ns, lambda ip: vm if ip == client.address else None, EventStore())
        wait_ready(bed, "c")
        status, body = fetch(bed, "c")
        assert (status, body) == (200, BODY), (status, body)
        for close in (False, True):
            results[("ours", close)].append(wrk(client.ns, args.duration, args.connections, close))


def run_nginx(bed: Testbed, args: argparse.Namespace, results: dict) -> None:
    client = bed.clients["c"]
    tmp = tempfile.mkdtemp(prefix="nsim-bench-nginx-")
    proc = None
    try:
        os.makedirs(os.path.join(tmp, "www", *PATH.strip("/").split("/")[:-1]))
        with open(os.path.join(tmp, "www", PATH.strip("/")), "wb") as f:
            f.write(BODY)
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=tmp, addr=METADATA_ADDRESS, path=PATH))
        proc = subprocess.Popen(in_ns(bed.node_ns, ["nginx", "-p", tmp, "-c", conf]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(bed, "c")
        status, body = fetch(bed, "c")
        assert (status, body) == (200, BODY), (status, body)
        for close in (False, True):
            results[("nginx", close)].append(wrk(client.ns, args.duration, args.connections, close))
    finally:
        if proc is not None:
            # nsenter execs nginx, so this PID is nginx's master; SIGTERM stops its worker too.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (``load ...``: the datacenter load figure)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import metadata_load
        return metadata_load.main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    ap.add_argument("--connections", type=int, default=10, help="wrk connections (default 10)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; medians are reported (default 1)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/metadata.py needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    for tool in ("wrk", "nginx", "nsenter"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    results: dict = {(s, c): [] for s in ("ours", "nginx") for c in (False, True)}
    # Per-netns client settings, else Connection: close runs exhaust ports in TIME_WAIT.
    sysctls = {"net/ipv4/tcp_tw_reuse": "1", "net/ipv4/ip_local_port_range": "1024 65535"}
    for r in range(args.rounds):
        with Testbed(f"nsim-srvbench-{os.getpid()}-", client_sysctls=sysctls) as bed:
            bed.build_node()
            bed.add_client("c", "169.254.10.1", "02:00:00:00:10:01")
            run_ours(bed, args, results)
            run_nginx(bed, args, results)
    print(f"\nGET {PATH}, wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} round(s), medians\n")
    print(f"{'mode':<12} {'ours req/s':>12} {'nginx req/s':>12} {'ratio':>7}  {'ours p50':>9} {'nginx p50':>9}  "
          f"{'non-2xx/err (ours, nginx)'}")
    ok = True
    for close, label in ((False, "keep-alive"), (True, "close")):
        ours = statistics.median(x["rps"] for x in results[("ours", close)])
        ngx = statistics.median(x["rps"] for x in results[("nginx", close)])
        ratio = ours / ngx if ngx else float("nan")
        ok &= ratio >= 0.60
        bad = (sum(x["non2xx"] + x["errors"] for x in results[("ours", close)]),
               sum(x["non2xx"] + x["errors"] for x in results[("nginx", close)]))
        print(f"{label:<12} {ours:>12,.0f} {ngx:>12,.0f} {ratio:>7.2f}  "
              f"{results[('ours', close)][-1]['p50']:>9} {results[('nginx', close)][-1]['p50']:>9}  {bad}")
    print(f"\ngoal: ours >= 0.60 x nginx in both modes: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(10)
    sys.exit(main())
