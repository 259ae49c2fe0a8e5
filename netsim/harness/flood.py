"""Bounded floods of a metadata server and honest pollers, for tests and ``bench/abuse_flood.py``.

Like :mod:`netsim.harness.testbed`, this lives in the package so the tests and the benchmark
drive the same traffic. Every socket is opened inside a netsim namespace
(:func:`netsim.kernel.safety.emulated_socket`); nothing is sent from the host's namespace.
A flood runs in its own process (``python -m netsim.harness.flood KIND NS SECONDS``, see
:func:`start_flood`) so that it competes with the server for the CPU as a VM would,
and ends by itself after its duration.

Floods (issue 9): ``pipeline`` (50 connections sending pipelined requests as fast as
the server takes them, reading the answers), ``noread`` (1,000 connections that send
requests and never read an answer), ``headers`` (requests with 15 KB of headers,
pipelined).
"""

from __future__ import annotations

import argparse
import ast
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from netsim.kernel.safety import emulated_socket
from netsim_imds.address import METADATA_ADDRESS

HONEST = f"GET /metadata/v1/InstanceInfo HTTP/1.1\r\nHost: {METADATA_ADDRESS}\r\n\r\n".encode()
SMALL = f"GET /metadata/v1/maintenance HTTP/1.1\r\nHost: {METADATA_ADDRESS}\r\n\r\n".encode()
BIG = SMALL[:-2] + b"X-Pad: " + b"a" * 15_000 + b"\r\n\r\n"

FLOODS: dict[str, tuple[int, bytes]] = {
    "pipeline": (50, SMALL * 200),
    "noread": (1000, SMALL * 100),
    "headers": (20, BIG * 4),
}
"""Flood kind -> (connections, bytes sent per write)."""


def connect(ns: str, timeout: float = 2.0) -> socket.socket:
    """A TCP connection from namespace ``ns`` to its node's 169.254.169.254:80."""
    sock = emulated_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((METADATA_ADDRESS, 80))
    except OSError:
        sock.close()
        raise
    return sock


def flood(kind: str, ns: str, seconds: float, connections: int | None = None) -> dict[str, int]:
    """Run flood ``kind`` from namespace ``ns`` for ``seconds``; return what it did."""
    count, payload = FLOODS[kind]
    count = connections or count
    read = kind != "noread"
    deadline = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    stats = {"connections": 0, "refused": 0, "closed": 0, "sent": 0, "received": 0}
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        try:
            sock = connect(ns)
        except OSError:
            stats["refused"] += 1
            continue
        sock.setblocking(False)
        stats["connections"] += 1
        sel.register(sock, selectors.EVENT_WRITE | (selectors.EVENT_READ if read else 0), [payload, 0])
    while sel.get_map() and (left := deadline - time.monotonic()) > 0:
        for key, mask in sel.select(min(left, 0.2)):
            sock, state = key.fileobj, key.data
            try:
                if mask & selectors.EVENT_READ:
                    data = sock.recv(1 << 16)
                    if not data:
                        raise ConnectionResetError
                    stats["received"] += len(data)
                if mask & selectors.EVENT_WRITE:
                    sent = sock.send(memoryview(state[0])[state[1]:])
                    state[1] = (state[1] + sent) % len(state[0])
                    stats["sent"] += sent
            except BlockingIOError:
                pass
            except OSError:
                stats["closed"] += 1
                sel.unregister(sock)
                sock.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return stats


def start_flood(kind: str, ns: str, seconds: float) -> subprocess.Popen:
    """Start flood ``kind`` from ``ns`` in a child process that ends after ``seconds``
    (wait for it with ``proc.communicate()``; its last stdout line is its stats)."""
    if kind not in FLOODS:
        raise ValueError(f"unknown flood {kind!r}; one of {', '.join(FLOODS)}")
    # where the netsim package in use is importable from, also when it is not installed
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, "-m", "netsim.harness.flood", kind, ns, f"{seconds:g}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@dataclass
class PollResult:
    """What an honest poller saw: latencies of the answers (seconds) and its errors."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def p99(self) -> float:
        """99th percentile latency (seconds; infinity without answers)."""
        if not self.latencies:
            return float("inf")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _read_answer(sock: socket.socket, buf: bytearray) -> int:
    """Read one response from ``sock`` (leftovers stay in ``buf``); return its status."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed before an answer")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(buf) < end + 4 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed in an answer")
        buf += chunk
    del buf[:end + 4 + length]
    return int(head.split(" ", 2)[1])


class HonestPoller(threading.Thread):
    """A VM that polls its metadata server ``rate`` times a second on one keep-alive
    connection for ``seconds``; an answer slower than ``timeout``, a non-200 or a broken
    connection is an error (it then reconnects)."""

    def __init__(self, ns: str, seconds: float, rate: float = 10.0, timeout: float = 2.0,
                 request: bytes = HONEST) -> None:
        super().__init__(name=f"poller-{ns}", daemon=True)
        self.ns, self.seconds, self.rate, self.timeout, self.request = ns, seconds, rate, timeout, request
        self.result = PollResult()

    def run(self) -> None:
        sock: socket.socket | None = None
        buf = bytearray()
        start = time.monotonic()
        tick = 0
        while (due := start + tick / self.rate) < start + self.seconds:
            tick += 1
            time.sleep(max(0.0, due - time.monotonic()))
            t = time.monotonic()
            try:
                if sock is None:
                    sock, buf = connect(self.ns, self.timeout), bytearray()
                sock.settimeout(self.timeout)
                sock.sendall(self.request)
                status = _read_answer(sock, buf)
                if status != 200:
                    self.result.errors.append(f"status {status}")
                else:
                    self.result.latencies.append(time.monotonic() - t)
            except OSError as exc:
                self.result.errors.append(f"{type(exc).__name__}: {exc}")
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()


def _rss_kb(pid: int, field_name: str) -> int:
    """A ``/proc/PID/status`` memory field (kB); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class FloodReport:
    """One flood against a running server process, with honest pollers beside it.

    ``honest``: each poller's namespace and result; ``rss_peak_mb``: the server process's
    largest resident set seen while the flood ran (sampled every 0.1 s); ``log_growth``:
    bytes its log grew by; ``probes``: seconds each call of the probe took (``None``:
    the probe raised); ``stats``: the flood's own counts.
    """

    kind: str
    seconds: float
    honest: dict[str, PollResult]
    rss_peak_mb: float
    log_growth: int
    probes: list[float | None]
    stats: dict[str, int]


def run_flood(kind: str, flood_ns: str, honest_ns: list[str], seconds: float, *, pid: int, log_path: str,
              probe: Callable[[], object] | None = None) -> FloodReport:
    """Flood from ``flood_ns`` for ``seconds`` while a poller in each of ``honest_ns`` polls 10/s
    (from 0.5 s in to 0.5 s before the end); watch process ``pid`` and its log ``log_path``;
    call ``probe`` (e.g. a control-socket request) again and again during the flood."""
    log_start = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    pollers = [HonestPoller(ns, max(1.0, seconds - 1.0)) for ns in honest_ns]
    probes: list[float | None] = []
    peak = _rss_kb(pid, "VmRSS")
    proc = start_flood(kind, flood_ns, seconds)
    try:
        time.sleep(0.5)  # the flood is under way before the honest VMs start
        for p in pollers:
            p.start()
        end = time.monotonic() + seconds - 0.5
        while time.monotonic() < end:
            peak = max(peak, _rss_kb(pid, "VmRSS"))
            if probe is not None:
                t = time.monotonic()
                try:
                    probe()
                    probes.append(time.monotonic() - t)
                except Exception:
                    probes.append(None)
            time.sleep(0.1)
        for p in pollers:
            p.join(seconds + 10)
    finally:
        out, err = proc.communicate(timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"flood {kind} failed: {err.strip()[-300:]}")
    stats = ast.literal_eval(out.strip().splitlines()[-1])
    log_end = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    return FloodReport(kind, seconds, {p.ns: p.result for p in pollers}, peak / 1024, log_end - log_start,
                       probes, stats)


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.harness.flood KIND NS SECONDS``: run one flood, print its stats."""
    ap = argparse.ArgumentParser(prog="python -m netsim.harness.flood", description="a bounded metadata flood")
    ap.add_argument("kind", choices=sorted(FLOODS))
    ap.add_argument("ns", help="the netsim namespace to flood from")
    ap.add_argument("seconds", type=float)
    ap.add_argument("--connections", type=int, default=None)
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 600:
        ap.error("seconds must be in (0, 600]")
    print(flood(args.kind, args.ns, args.seconds, args.connections), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
