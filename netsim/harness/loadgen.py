"""A load generator for the ``client`` host: HTTP GETs at a fixed rate, failures per second.

One asyncio process sends request *i* at ``start + i / rate``, each on a new TCP
connection (``Connection: close``), until ``--count`` requests or ``--duration``
seconds, whichever comes first; then it waits for the last answers (at most
``--timeout``) and writes a JSON summary. A request fails if no complete ``200``
answer arrives within ``--timeout`` seconds, or the connection is refused or reset.

``--source A,B,...`` binds successive requests to these local addresses in turn, so one
process looks like several clients (HAProxy's ``balance source`` then spreads them);
the addresses must exist in the namespace (:func:`add_source_addresses`).

    python -m netsim.harness.loadgen --url http://198.19.255.100/ --rate 50 --duration 10 --out summary.json

The summary: ``{"ok", "failed", "sent", "errors": {kind: n}, "per_second": [{"second",
"ok", "failed"}], "backends": {answer: n}, "by_source": {address: {answer: n}},
"failures": [{"at", "kind", "source", "phase", "elapsed"}], ...}`` where an *answer* is
the first line of a 200's body (the webapp's VM name) and ``failures`` lists the first
failed requests in full (sent at, error, where they stopped, after how long). The
process stops by itself; SIGTERM or SIGINT ends it early and still writes the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_ANSWER = 1 << 16
# Longer than TCP's recovery from a lost SYN (1 s; 3 s for two), shorter than HAProxy's
# server timeout: a request stuck on a VM that went away under it still fails.
DEFAULT_TIMEOUT = 5.0
MAX_FAILURE_RECORDS = 100  # the summary lists the first failures in full, for diagnosis


@dataclass
class Tally:
    """Outcomes, bucketed by the second (since start) in which each request was *sent*."""

    ok: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    backends: Counter = field(default_factory=Counter)
    by_source: dict = field(default_factory=lambda: defaultdict(Counter))
    latencies: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    def success(self, second: int, source: str, answer: str, latency: float) -> None:
        """A 200 arrived in time."""
        self.ok[second] += 1
        self.backends[answer] += 1
        self.by_source[source][answer] += 1
        self.latencies.append(latency)

    def failure(self, second: int, kind: str, *, at: float | None = None, source: str = "",
                phase: str = "", elapsed: float | None = None) -> None:
        """The request failed (``kind``: timeout, refused, reset, status-503, ...).

        The first :data:`MAX_FAILURE_RECORDS` failures are also kept in full: when it was
        sent (``at``, seconds since the start), from which ``source``, in which ``phase``
        (connect, request, head, body) and after how long."""
        self.failed[second] += 1
        self.errors[kind] += 1
        if len(self.failures) < MAX_FAILURE_RECORDS:
            self.failures.append({"at": None if at is None else round(at, 3), "kind": kind, "source": source,
                                  "phase": phase, "elapsed": None if elapsed is None else round(elapsed, 3)})

    def summary(self, seconds: int, **extra) -> dict:
        """The JSON-ready summary with one entry per second ``0 .. seconds - 1``."""
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        ok, failed = sum(self.ok.values()), sum(self.failed.values())
        return {**extra, "sent": ok + failed, "ok": ok, "failed": failed, "errors": dict(self.errors),
                "per_second": [{"second": s, "ok": self.ok[s], "failed": self.failed[s]} for s in range(seconds)],
                "backends": dict(self.backends), "by_source": {k: dict(v) for k, v in self.by_source.items()},
                "failures": list(self.failures),
                "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)}}


async def fetch(host: str, port: int, path: str, source: str | None, timeout: float,
                phases: list[str] | None = None) -> tuple[int, str]:
    """One GET on a new connection: (status, first line of the body). Raises on failure.

    ``phases``, when given, gets each phase appended as it begins (connect, request, head,
    body), so a caller can tell where a failed request stopped."""
    phases = phases if phases is not None else []

    async def go() -> tuple[int, str]:
        phases.append("connect")
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
        try:
            phases.append("request")
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                         "User-Agent: netsim-loadgen\r\n\r\n".encode())
            await writer.drain()
            phases.append("head")
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next((int(ln.split(":", 1)[1]) for ln in lines[1:] if ln.lower().startswith("content-length:")),
                          None)
            phases.append("body")
            body = await (reader.readexactly(length) if length is not None else reader.read(MAX_ANSWER))
            return status, body.decode(errors="replace").split("\n", 1)[0].strip()
        finally:
            writer.close()
    return await asyncio.wait_for(go(), timeout)


def _kind(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, (asyncio.IncompleteReadError, asyncio.LimitOverrunError)):
        return "incomplete"
    if isinstance(exc, OSError):
        return f"oserror-{exc.errno}"
    return type(exc).__name__


async def _report(tally: Tally, path: str, start: float, rate: float) -> None:
    """Every second, write the outcomes so far to ``path`` (atomically), for live displays."""
    while True:
        await asyncio.sleep(1.0)
        seconds = int((time.monotonic() - start)) + 1
        text = json.dumps({"ok": sum(tally.ok.values()), "failed": sum(tally.failed.values()),
                           "per_second": [[s, tally.ok[s], tally.failed[s]] for s in range(seconds)]})
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


async def generate(url: str, rate: float, duration: float, count: int | None, timeout: float,
                   sources: list[str] | None = None, progress: str | None = None) -> dict:
    """Send the load and return the summary; with ``progress``, also write the outcomes
    so far to that file every second."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    total = int(rate * duration) if count is None else min(count, int(rate * duration))
    tally = Tally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass

    async def one(i: int, second: int) -> None:
        source = sources[i % len(sources)] if sources else None
        began = time.monotonic()
        phases: list[str] = []
        try:
            status, answer = await fetch(host, port, path, source, timeout, phases)
        except Exception as exc:  # every failure of the world is counted, never raised
            status, answer = 0, _kind(exc)
        if status == 200:
            tally.success(second, source or "", answer, time.monotonic() - began)
        else:
            tally.failure(second, answer if status == 0 else f"status-{status}", at=began - start,
                          source=source or "", phase=phases[-1] if phases else "", elapsed=time.monotonic() - began)

    start = time.monotonic()
    started_at = time.time()
    reporter = asyncio.create_task(_report(tally, progress, start, rate)) if progress else None
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        if stop.is_set():
            break
        tasks.append(asyncio.create_task(one(i, int(i / rate))))
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1.0)
    if reporter is not None:
        reporter.cancel()
    seconds = max(1, int((len(tasks) - 1) / rate) + 1) if tasks else 0
    return tally.summary(seconds, url=url, rate=rate, duration=duration, timeout=timeout,
                         started=started_at, elapsed=round(time.monotonic() - start, 3),
                         sources=sources or [], interrupted=stop.is_set())


def add_source_addresses(dc, addresses: list[str], host: str = "client", prefixlen: int = 24) -> None:
    """Harness helper: add ``addresses`` to ``eth0`` of ``host`` so ``--source`` can bind them."""
    from netsim.model import names
    from netsim.kernel.rtnl import Rtnl
    with Rtnl.in_namespace(dc.namespace(host)) as sock:
        for a in addresses:
            sock.add_address(names.NIC_INDEX, a, prefixlen, exist_ok=True)
        sock.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.harness.loadgen --url URL --rate R --duration S [...]``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.harness.loadgen", description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://198.19.255.100/")
    ap.add_argument("--rate", type=float, default=20.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending (bounded)")
    ap.add_argument("--count", type=int, help="at most this many requests")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"seconds a request may take (default {DEFAULT_TIMEOUT:g})")
    ap.add_argument("--source", help="local addresses to send from, comma-separated, used in turn")
    ap.add_argument("--out", help="write the JSON summary here (default: stdout)")
    ap.add_argument("--progress", help="write the outcomes so far to this file every second")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.timeout <= 0:
        ap.error("--rate, --duration and --timeout must be positive")

    from netsim.kernel.safety import require_emulated_namespace
    require_emulated_namespace("loadgen")
    sources = [s for s in (args.source or "").split(",") if s] or None
    summary = asyncio.run(generate(args.url, args.rate, args.duration, args.count, args.timeout, sources,
                                   args.progress))
    text = json.dumps(summary, indent=1)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(args.out + ".tmp", args.out)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
