"""Benchmark: the metadata service on its real path vs nginx, in the same run.

    .venv/bin/python bench/metadata.py [--duration 5] [--connections 10] [--rounds 1]
                                       [--loops uvloop,asyncio] [--floor] [--profile DIR]
    .venv/bin/python bench/metadata.py load [--duration 30] [--nodes 100] [--quick] ...

(as root). Builds a real one-node datacenter (``grid``, one VM, static link-local) with
``netsim.api.datacenter.up`` and loads what users run: the datacenter's daemon, its own
server setup (fairness, bounds, per-connection caller identity from the node's neighbour
table and FDB by :class:`netsim.runtime.identity.NeighbourResolver`, the SQLite
repository's view of the node's events). ``wrk`` runs inside the VM's namespace against
``GET /metadata/v1/maintenance`` (the 2015 API: no per-VM rate limit, so one VM can load
it), with keep-alive and with ``Connection: close``. The daemon is run once per event
loop (``NETSIM_LOOP``: uvloop, the stdlib's asyncio); then it is stopped and nginx
(Debian-default-like static setup: 1 worker, sendfile on, tcp_nopush on, access_log off)
serves the same bytes on the same 169.254.169.254:80 of the same node. Prints req/s and
the ratios ours / nginx per loop and mode, with the goals of issue 10 (keep-alive >= 1.0,
new connection per request >= 0.8), and the server's CPU per request (steadier than req/s
on a busy host). ``--floor`` adds a bare asyncio Protocol answering fixed bytes on each
loop (what the loop alone costs). ``--profile DIR`` also records the daemon with py-spy
during each run (collapsed stacks; it perturbs the figures a little). Everything it
starts is ended by PID and the datacenter is torn down in a ``finally``; no traffic
starts in the host's namespace.

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

from netsim.api import datacenter
from netsim.kernel import netns, safety
from netsim.model import grid, names

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metadata_load import proc_cpu  # noqa: E402  (the benchmarks' /proc reader)

ADDRESS = "169.254.169.254"
PATH = "/metadata/v1/maintenance"
URL = f"http://{ADDRESS}{PATH}"
BODY = b"{}"
GOALS = {False: 1.0, True: 0.8}  # keep-alive, close: ours / nginx (issue 10, item 6)
VM = "vm1"

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


def fetch(vm_ns: str) -> tuple[int, bytes]:
    """One GET from inside the VM's namespace: (status, body)."""
    with safety.emulated_socket(vm_ns, socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect((ADDRESS, 80))
        sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: {ADDRESS}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split()[1:2]
    return (int(status[0]) if status and status[0].isdigit() else 0), body  # 0: no answer


def wait_ready(vm_ns: str, timeout: float = 5.0) -> None:
    """Wait until 169.254.169.254:80 answers 200 with the expected body, seen from the VM."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fetch(vm_ns)
            if got == (200, BODY):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the metadata server answered {got}, not (200, {BODY!r})")
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def server_cpu(pids: list[int]) -> float:
    """CPU seconds of the server: ``pids`` and their children (nginx's workers)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        for p in (pid, *kids):
            try:
                total += proc_cpu(p)
            except OSError:
                pass
    return total


def wrk(vm_ns: str, duration: float, connections: int, close: bool, server: list[int]) -> dict:
    """Run wrk in the VM's namespace; return req/s, p50, non-2xx, socket errors and the
    server's CPU microseconds per request (``server``: its PIDs), which host contention
    moves less than req/s."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    cpu = server_cpu(server)
    out = subprocess.run(in_ns(vm_ns, argv + [URL]), capture_output=True, text=True, timeout=duration + 30)
    cpu = server_cpu(server) - cpu
    text = out.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    count = re.search(r"(\d+) requests in", text)
    return {"rps": float(m.group(1)), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": sum(map(int, errors.groups())) if errors else 0, "p50": p50.group(1) if p50 else "?",
            "us": 1e6 * cpu / max(1, int(count.group(1)) if count else 1)}


def profiler(folder: str, label: str, pid: int, duration: float) -> subprocess.Popen:
    """py-spy on the daemon for one wrk run (collapsed stacks in ``folder/label.txt``)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    os.makedirs(folder, exist_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))), "--rate", "250",
            "--nonblocking", "--format", "raw", "--output", os.path.join(folder, f"{label}.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load_both(label: str, vm_ns: str, args: argparse.Namespace, results: dict, pid: int, profile: bool) -> None:
    """Keep-alive then close against server ``pid``, into ``results[(label, close)]``."""
    for close in (False, True):
        spy = (profiler(args.profile, f"{label}-{'close' if close else 'keepalive'}", pid, args.duration)
               if args.profile and profile else None)
        results.setdefault((label, close), []).append(wrk(vm_ns, args.duration, args.connections, close, [pid]))
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.terminate()
                spy.wait()


def loop_of(running: datacenter.RunningDatacenter, since: int) -> str:
    """The event loop the daemon says it runs on (its log line after offset ``since``)."""
    with open(running.state.file("daemon.log"), "rb") as f:
        f.seek(since)
        m = re.search(rb"event loop (\S+)", f.read())
    return m.group(1).decode() if m else "?"


def run_ours(running: datacenter.RunningDatacenter, loop: str, args: argparse.Namespace, results: dict) -> str:
    """Restart the datacenter's daemon on ``loop`` and load it; returns the loop it reported."""
    running.stop_daemon()
    os.environ["NETSIM_LOOP"] = loop
    since = os.path.getsize(running.state.file("daemon.log"))
    pid = running.start_daemon()
    vm_ns = names.vm_ns(running.name, VM)
    seen = loop_of(running, since)
    try:
        wait_ready(vm_ns)
    except (OSError, RuntimeError) as exc:
        with open(running.state.file("daemon.log"), "rb") as f:
            f.seek(since)
            tail = f.read().decode(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"the daemon on {seen} does not answer ({exc}); its log ends: {tail}") from None
    if seen != loop:
        raise RuntimeError(f"NETSIM_LOOP={loop} but the daemon runs on {seen} (is uvloop installed?)")
    load_both(loop, vm_ns, args, results, pid, True)
    return seen


BARE = """
import asyncio, sys
REPLY = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json; charset=utf-8\\r\\nContent-Length: 2\\r\\n\\r\\n{}")

class Bare(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\\r\\n\\r\\n")
        if n:
            close = b"onnection: close" in self.buf
            self.buf = self.buf[self.buf.rindex(b"\\r\\n\\r\\n") + 4:]
            if close:
                self.t.write(REPLY.replace(b"\\r\\n\\r\\n", b"\\r\\nConnection: close\\r\\n\\r\\n") * n)
                self.t.close()
            else:
                self.t.write(REPLY * n)

async def main():
    server = await asyncio.get_running_loop().create_server(Bare, "{addr}", 80, backlog=4096, reuse_address=True)
    await server.serve_forever()

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main())
"""


def run_process(running: datacenter.RunningDatacenter, label: str, argv: list[str], args: argparse.Namespace,
                results: dict) -> None:
    """Stop the daemon, run server ``argv`` in the node's namespace on 169.254.169.254:80, load it."""
    running.stop_daemon()
    node_ns, vm_ns = names.node_ns(running.name, "n1"), names.vm_ns(running.name, VM)
    proc = subprocess.Popen(in_ns(node_ns, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(vm_ns)
        load_both(label, vm_ns, args, results, proc.pid, False)
    finally:
        # nsenter execs the server, so this PID is the server's (nginx's master: SIGTERM
        # stops its worker too).
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_nginx(running: datacenter.RunningDatacenter, args: argparse.Namespace, results: dict) -> None:
    """nginx serving the same bytes as a static file (see NGINX_CONF)."""
    tmp = tempfile.mkdtemp(prefix="nsim-bench-nginx-")
    try:
        os.makedirs(os.path.join(tmp, "www", *PATH.strip("/").split("/")[:-1]))
        with open(os.path.join(tmp, "www", PATH.strip("/")), "wb") as f:
            f.write(BODY)
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=tmp, addr=ADDRESS, path=PATH))
        run_process(running, "nginx", ["nginx", "-p", tmp, "-c", conf], args, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_bare(running: datacenter.RunningDatacenter, loop: str, args: argparse.Namespace, results: dict) -> None:
    """The floor: a bare asyncio Protocol answering fixed bytes, on ``loop`` (``--floor``)."""
    code = BARE.replace("{addr}", ADDRESS)
    run_process(running, f"bare-{loop}", [sys.executable, "-c", code, loop], args, results)


def available_loops(wanted: list[str]) -> list[str]:
    """The loops of ``wanted`` that can run here (uvloop only if importable)."""
    try:
        import uvloop  # noqa: F401
        have_uvloop = True
    except ImportError:
        have_uvloop = False
    out = [x for x in wanted if x != "uvloop" or have_uvloop]
    if len(out) < len(wanted):
        print("uvloop is not installed (scripts/setup installs it): measuring the asyncio loop only",
              file=sys.stderr)
    return out


def report(results: dict, loops: list[str], args: argparse.Namespace) -> bool:
    """Print the table; True if every goal is met on every loop measured."""
    print(f"\nGET {PATH} from a VM, real path (daemon: identity + repository view), "
          f"wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} round(s), medians\n")
    print(f"{'server':<12} {'mode':<11} {'req/s':>10} {'p50':>9} {'x nginx':>8} {'goal':>6} {'CPU us/req':>10} "
          f"{'x nginx':>8}  non-2xx/errors")
    ok = True
    for close, mode in ((False, "keep-alive"), (True, "close")):
        ngx = statistics.median(x["rps"] for x in results[("nginx", close)])
        ngx_us = statistics.median(x["us"] for x in results[("nginx", close)])
        for label in (*loops, *(f"bare-{x}" for x in loops if args.floor), "nginx"):
            runs = results[(label, close)]
            rps = statistics.median(x["rps"] for x in runs)
            bad = sum(x["non2xx"] + x["errors"] for x in runs)
            us = statistics.median(x["us"] for x in runs)
            if label == "nginx":
                print(f"{label:<12} {mode:<11} {rps:>10,.0f} {runs[-1]['p50']:>9} {'':>8} {'':>6} {us:>10.1f} "
                      f"{'':>8}  {bad}")
                continue
            ratio = rps / ngx if ngx else float("nan")
            met = ratio >= GOALS[close] and bad == 0
            floor = label.startswith("bare-")  # the loop's floor, no goal of ours
            ok &= met or floor
            print(f"{label:<12} {mode:<11} {rps:>10,.0f} {runs[-1]['p50']:>9} {ratio:>8.2f} "
                  f"{'' if floor else 'met' if met else 'NOT':>6} {us:>10.1f} {ngx_us / us if us else float('nan'):>8.2f}  {bad}")
    print(f"\ngoals: ours >= {GOALS[False]:g} x nginx with keep-alive, >= {GOALS[True]:g} x with a new "
          f"connection per request: {'met' if ok else 'NOT met'} ({', '.join(loops)}); the second "
          f"'x nginx' is nginx's CPU per request / ours (1.0: as cheap as nginx), steadier on a busy host")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (``load ...``: the datacenter load figure)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        import metadata_load
        return metadata_load.main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    ap.add_argument("--connections", type=int, default=10, help="wrk connections (default 10)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; medians are reported (default 1)")
    ap.add_argument("--loops", default="uvloop,asyncio", help="event loops of the daemon (default uvloop,asyncio)")
    ap.add_argument("--name", default="mdbench", help="datacenter name (default mdbench)")
    ap.add_argument("--profile", metavar="DIR", help="also record the daemon with py-spy in DIR")
    ap.add_argument("--floor", action="store_true",
                    help="also measure a bare asyncio Protocol answering fixed bytes on each loop (the loop's floor)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/metadata.py needs root (it builds namespaces)", file=sys.stderr)
        return 2
    for tool in ("wrk", "nginx", "nsenter"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (scripts/setup installs it)", file=sys.stderr)
            return 2
    loops = available_loops([x.strip() for x in args.loops.split(",") if x.strip()])
    root = tempfile.mkdtemp(prefix="netsim-mdbench-")
    os.environ["NETSIM_STATE_DIR"] = root
    saved_loop = os.environ.get("NETSIM_LOOP")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwinds through the finally
    running = None
    results: dict = {}
    try:
        running = datacenter.up(grid(args.name, 1, 1, linklocal="static"))
        with netns.entered(names.vm_ns(running.name, VM)):
            # The client's side, else Connection: close runs exhaust its ports in TIME_WAIT.
            netns.write_sysctl("net/ipv4/tcp_tw_reuse", "1")
            netns.write_sysctl("net/ipv4/ip_local_port_range", "1024 65535")
        for _ in range(args.rounds):
            for loop in loops:
                run_ours(running, loop, args, results)
            if args.floor:
                for loop in loops:
                    run_bare(running, loop, args, results)
            run_nginx(running, args, results)
    finally:
        if saved_loop is None:
            os.environ.pop("NETSIM_LOOP", None)
        else:
            os.environ["NETSIM_LOOP"] = saved_loop
        try:
            if running is not None:
                running.down()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    report(results, loops, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
