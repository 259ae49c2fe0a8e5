"""Benchmark: faults (issue 13) -- add to effective, at scale, and what the layer costs.

    flock /tmp/netsim-bench.lock .venv/bin/python bench/faults.py [--rounds 50] [--nodes 100]
                                                                 [--duration 5] [--skip-scale]

(as root). Three parts, each on a real datacenter torn down in a ``finally``; no traffic
starts in the host's namespace (every socket is opened inside a VM's namespace).

1. **Add to effective**, one node and one VM (``bflt``): ``--rounds`` times, an HTTP fault
   (``--http 503``) is added and a keep-alive client inside the VM asks again until it
   sees the 503: the time from the call to the 503 (p50 / p99; goal p99 <= 50 ms). Then a
   link fault (``--partition``, nft, and ``--latency 0 --rate``, a tbf qdisc): the time from
   the call to its answer, when the kernel holds the rule; a probe from the VM right after
   must fail (a TCP connect to the metadata service; counted if it does not). Goal p99 <= 100 ms.
2. **A thousand VMs** (``--nodes`` x 10, static link-local): a link fault on ``all`` (loss,
   an nft rule per port; rate, a tbf qdisc per port) applied and cleared (goal <= 2 s each).
   A latency fault (``--latency 50``; netem, or netsim's delay line on a kernel without
   netem): the time from the call to its answer, when the kernel redirects the port; a TCP
   connect from the VM right after must take >= 50 ms (its SYN-ACK is held; counted if not).
4. **The delay line's cost** (kernels without netem only): ``--frames`` echo replies
   (a ping flood from the VM, 32 in flight) through a ``--latency 1`` line: frames/s and
   the daemon's CPU per frame, against the same flood with no fault (the difference is
   the line's).
3. **Throughput with no fault active**, the one-VM datacenter: ``wrk`` in the VM (keep-alive,
   10 connections) against the daemon, then against the same daemon started from a copy of
   this tree whose ``server/connection.py`` is git HEAD's (no fault layer), alternated
   ``--ab`` times; medians of req/s and of the daemon's CPU per request, and their ratios
   (goal within 3 %; on a shared machine the CPU per request is the steadier figure).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from netsim.api import datacenter
from netsim.kernel import netns, qdisc, safety
from netsim.model import names
from netsim.model.topology import grid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metadata_load import proc_cpu  # noqa: E402  (the benchmarks' /proc reader)

ADDRESS = "169.254.169.254"
PATH = "/metadata/v1/maintenance"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class KeepAlive:
    """One keep-alive HTTP client inside a VM's namespace."""

    def __init__(self, vm_ns: str) -> None:
        self.vm_ns, self.sock = vm_ns, None

    def get(self) -> int:
        """One GET; its status (0: the connection failed; it is opened again next time)."""
        try:
            if self.sock is None:
                self.sock = safety.emulated_socket(self.vm_ns, socket.AF_INET, socket.SOCK_STREAM)
                self.sock.settimeout(2)
                self.sock.connect((ADDRESS, 80))
            self.sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: {ADDRESS}\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise OSError("closed")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            while len(body) < length:
                body += self.sock.recv(65536)
            return int(head.split()[1])
        except (OSError, AttributeError, ValueError):
            if self.sock is not None:
                self.sock.close()
            self.sock = None
            return 0


def connects(vm_ns: str, timeout: float = 0.2) -> bool:
    """Whether a TCP connect to the metadata service from inside the VM succeeds."""
    with safety.emulated_socket(vm_ns, socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((ADDRESS, 80))
            return True
        except OSError:
            return False


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def effective(dc: datacenter.RunningDatacenter, rounds: int) -> dict:
    """Part 1: seconds from add to effective, per kind."""
    vm_ns = names.vm_ns(dc.name, "vm1")
    client = KeepAlive(vm_ns)
    assert client.get() == 200
    http = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        dc.add_fault("vm1", http=503)
        while client.get() != 503:
            pass
        http.append(time.perf_counter() - t0)
        dc.clear_faults()
        while client.get() != 200:
            pass
    out = {"http": http}
    for label, options in (("partition", {"partition": True}), ("rate", {"latency": 0, "rate": 1000})):
        times, late = [], 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            dc.add_fault("vm1", **options)
            times.append(time.perf_counter() - t0)
            if label == "partition":
                late += connects(vm_ns)  # must fail at once
            dc.clear_faults()
            while label == "partition" and not connects(vm_ns, 1.0):
                pass
        out[label], out[f"{label}_late"] = times, late
    times, late = [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        dc.add_fault("vm1", latency=50)
        times.append(time.perf_counter() - t0)
        late += connect_time(vm_ns) < 0.05  # the SYN-ACK must be held 50 ms
        dc.clear_faults()
    out["latency"], out["latency_late"] = times, late
    return out


def connect_time(vm_ns: str) -> float:
    """Seconds a TCP connect to the metadata service from inside the VM takes (inf: failed)."""
    with safety.emulated_socket(vm_ns, socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        t0 = time.perf_counter()
        try:
            s.connect((ADDRESS, 80))
        except OSError:
            return float("inf")
        return time.perf_counter() - t0


def line_cost(dc: datacenter.RunningDatacenter, frames: int) -> dict:
    """Part 4: a ping flood's replies through a 1 ms delay line, and with no fault:
    (frames/s, the daemon's CPU microseconds per frame) of each."""
    daemon = dc.daemon_pids()[0]
    out = {}
    for label in ("none", "line"):
        if label == "line":
            dc.add_fault("vm1", latency=1)
        cpu, t0 = proc_cpu(daemon), time.perf_counter()
        flood = dc.run("vm1", ["ping", "-q", "-n", "-f", "-l", "32", "-c", str(frames), "-w", "60", ADDRESS],
                       capture_output=True, text=True, timeout=90)
        elapsed, cpu = time.perf_counter() - t0, proc_cpu(daemon) - cpu
        got = re.search(r"(\d+) received", flood.stdout)
        received = int(got.group(1)) if got else 0
        out[label] = (received / elapsed, 1e6 * cpu / max(1, received), received)
        dc.clear_faults()
    return out


def scale(nodes: int) -> dict:
    """Part 2: a link fault on all VMs of a big datacenter, applied and cleared."""
    t0 = time.perf_counter()
    dc = datacenter.up(grid(f"bfls{os.getpid() % 1000}", nodes, 10, linklocal="static"))
    out: dict = {"vms": nodes * 10, "build_s": time.perf_counter() - t0}
    try:
        for label, options in (("loss", {"loss": 10}), ("rate", {"latency": 0, "rate": 100000}),
                               ("latency", {"latency": 10})):
            t0 = time.perf_counter()
            dc.add_fault("all", **options)
            out[f"{label}_apply_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dc.clear_faults()
            out[f"{label}_clear_s"] = time.perf_counter() - t0
    finally:
        dc.down()
    return out


def without_fault_layer(folder: str) -> str:
    """A PYTHONPATH under which ``netsim_imds`` is this tree's server with git HEAD's
    connection.py (the build without the fault layer); ``netsim`` is this tree's."""
    pp = os.path.join(folder, "pp")
    os.makedirs(pp)
    shutil.copytree(os.path.join(REPO, "server"), os.path.join(pp, "netsim_imds"))
    head = subprocess.run(["git", "-C", REPO, "show", "HEAD:server/connection.py"], capture_output=True,
                          check=True).stdout
    if b"faults" in head:
        raise SystemExit("git HEAD's connection.py has the fault layer already: compare with an older commit")
    with open(os.path.join(pp, "netsim_imds", "connection.py"), "wb") as f:
        f.write(head)
    os.symlink(os.path.join(REPO, "netsim"), os.path.join(pp, "netsim"))
    return pp


def wrk(vm_ns: str, duration: float, daemon: int) -> tuple[float, float]:
    """wrk in the VM: (req/s, the daemon's CPU microseconds per request: steadier than req/s
    on a shared machine)."""
    argv = ["nsenter", f"--net={netns.path_of(vm_ns)}", "wrk", "-t1", "-c10", f"-d{duration:g}s",
            f"http://{ADDRESS}{PATH}"]
    cpu = proc_cpu(daemon)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    cpu = proc_cpu(daemon) - cpu
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    count = re.search(r"(\d+) requests in", out.stdout)
    if out.returncode != 0 or m is None or count is None or "Non-2xx" in out.stdout:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    return float(m.group(1)), 1e6 * cpu / max(1, int(count.group(1)))


def throughput(dc: datacenter.RunningDatacenter, duration: float, ab: int) -> dict:
    """Part 3: req/s with the fault layer (no fault) and without it, alternated."""
    vm_ns = names.vm_ns(dc.name, "vm1")
    results: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory(prefix="netsim-bench-faults-") as folder:
        pp = without_fault_layer(folder)
        saved = os.environ.get("PYTHONPATH")
        try:
            for _ in range(ab):
                for label in ("with", "without"):
                    dc.stop_daemon()
                    if label == "without":
                        os.environ["PYTHONPATH"] = pp
                    else:
                        os.environ.pop("PYTHONPATH", None) if saved is None else os.environ.update(PYTHONPATH=saved)
                    daemon = dc.start_daemon()
                    client = KeepAlive(vm_ns)
                    while client.get() != 200:
                        time.sleep(0.05)
                    results[label].append(wrk(vm_ns, duration, daemon))
        finally:
            os.environ.pop("PYTHONPATH", None) if saved is None else os.environ.update(PYTHONPATH=saved)
            dc.stop_daemon()
            dc.start_daemon()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=50, help="adds per kind in part 1 (default 50)")
    ap.add_argument("--nodes", type=int, default=100, help="nodes of 10 VMs in part 2 (default 100)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run in part 3 (default 5)")
    ap.add_argument("--ab", type=int, default=3, help="with/without alternations in part 3 (default 3)")
    ap.add_argument("--frames", type=int, default=20000, help="echo replies through the delay line in part 4")
    ap.add_argument("--skip-scale", action="store_true", help="skip part 2")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/faults.py needs root", file=sys.stderr)
        return 2
    dc = datacenter.up(grid(f"bflt{os.getpid() % 1000}", 1, 1, linklocal="static"))
    try:
        eff = effective(dc, args.rounds)
        cost = None if qdisc.netem_available() else line_cost(dc, args.frames)
        tput = throughput(dc, args.duration, args.ab)
    finally:
        dc.down()
    big = None if args.skip_scale else scale(args.nodes)
    ms = lambda xs, q: f"{1000 * pct(xs, q):.1f} ms"  # noqa: E731
    print("\n| figure | measured | goal |\n| --- | --- | --- |")
    print(f"| HTTP fault add -> 503 seen in the VM, p50 / p99 ({args.rounds}) | {ms(eff['http'], 0.5)} / "
          f"{ms(eff['http'], 0.99)} | p99 <= 50 ms |")
    for label in ("partition", "rate", "latency"):
        print(f"| link fault ({label}) add -> in the kernel, p50 / p99 ({args.rounds}); probes not cut: "
              f"{eff.get(label + '_late', 0)} | {ms(eff[label], 0.5)} / {ms(eff[label], 0.99)} | p99 <= 100 ms |")
    if cost is not None:
        for label, what in (("none", "no fault"), ("line", "a --latency 1 delay line")):
            rate, cpu, received = cost[label]
            print(f"| ping flood replies to the VM, {what}: frames/s, daemon CPU per frame ({received}) | "
                  f"{rate:.0f}/s, {cpu:.1f} us | - |")
    if big is not None:
        for label in ("loss", "rate", "latency"):
            print(f"| link fault ({label}) on all {big['vms']} VMs: applied / cleared | "
                  f"{big[label + '_apply_s']:.2f} s / {big[label + '_clear_s']:.2f} s | <= 2 s each |")
    def median(label: str, i: int) -> float:
        return statistics.median(r[i] for r in tput[label])
    w, wo = median("with", 0), median("without", 0)
    print(f"| req/s, no fault active: with / without the fault layer (medians of {args.ab}) | "
          f"{w:.0f} / {wo:.0f} = {w / wo:.3f} | >= 0.97 |")
    w, wo = median("with", 1), median("without", 1)
    print(f"| daemon CPU per request, no fault active: with / without (medians) | "
          f"{w:.1f} / {wo:.1f} us = {wo / w:.3f} | >= 0.97 |")
    print(f"\nraw (req/s, us/req): with {[(round(a), round(b, 1)) for a, b in tput['with']]}, "
          f"without {[(round(a), round(b, 1)) for a, b in tput['without']]}"
          + (f"; 1000-VM build {big['build_s']:.0f} s" if big else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
