#!/usr/bin/env python3
"""AWS flavor figures: IMDSv2 token PUT + GET under load, and an event's way to the VM.

An aws datacenter of 100 nodes x 10 VMs (``--quick``: 10 x 10), static link-local addresses.

1. Tokens: ONE asyncio process opens one keep-alive connection per VM, each socket born in
   that VM's namespace, and every VM runs AWS's IMDSv2 pattern 2.5 times a second (5
   requests; ``--rate``), evenly spaced with a random phase (open loop): ``PUT /latest/api/token`` (TTL 21600), then
   ``GET /latest/meta-data/instance-id`` with that token. The pair's latency is from its
   *scheduled* time to the GET's last byte (a pair due while the previous one is still in
   flight waits, and that wait counts); also each request's own latency. Errors: a non-200
   answer, a wrong body, an answer later than 1 s (botocore's default metadata timeout), a
   pair never answered, a connection lost. Daemon CPU from /proc. Then the anchor: the same
   load, in the same run, against a bare responder on another port of every node
   (bench/bare_tokens.py: fixed bytes, the token reply's TTL set and restored); the ratios
   ours / anchor are steadier than either figure on a shared machine (``--no-anchor``: skip it).
2. Visibility: every VM polls ``events/maintenance/scheduled`` with its token once a
   second (the background); for each sample one VM asks every 5 ms while ``event add``
   files a ``system-reboot`` for it, and the latency is from the control request to the
   first answer that carries the event's ``instance-event-...`` id; the event is canceled
   before the next sample.

Run as root, under the shared lock: flock /tmp/netsim-bench.lock .venv/bin/python bench/aws.py
[--quick] [--duration S] [--samples N] [--profile FILE] [--timeline FILE] (each pair's due time
and latency, to see whether a p99 is a queue or a few stalls). No traffic starts in the host's
namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench import bare_tokens  # noqa: E402
from bench.events import control, pct  # noqa: E402
from bench.metadata_load import daemon_pid, proc_cpu  # noqa: E402
from netsim.api.datacenter import RunningDatacenter, up  # noqa: E402
from netsim.kernel.safety import emulated_socket  # noqa: E402
from netsim.model import grid, names  # noqa: E402
from netsim.runtime.loop import loop_factory  # noqa: E402
from netsim_imds.address import METADATA_ADDRESS, METADATA_PORT  # noqa: E402

HOST = f"Host: {METADATA_ADDRESS}\r\n"
PUT = (f"PUT /latest/api/token HTTP/1.1\r\n{HOST}X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"
       "Content-Length: 0\r\n\r\n").encode()
TIMEOUT_S = 1.0
"""botocore's default metadata timeout: a later answer is an error."""
RATE = 2.5
"""Token PUT + GET pairs per second per VM by default: 5 requests a second, Azure's polling
limit and the rate of bench/metadata.py's load (``--rate 5``: 5 pairs, 10 requests)."""


def get(path: str, token: bytes) -> bytes:
    return f"GET {path} HTTP/1.1\r\n{HOST}X-aws-ec2-metadata-token: {token.decode()}\r\n\r\n".encode()


def parse(buf: bytearray) -> tuple[int, bytes, int] | None:
    """``(status, body, bytes used)`` of the first whole response in ``buf``, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in head else 0
    if len(buf) < end + 4 + length:
        return None
    return int(head.split(None, 2)[1]), bytes(buf[end + 4:end + 4 + length]), end + 4 + length


class Stats:
    """Latencies (seconds) of pairs and of each request, and error counts."""

    def __init__(self) -> None:
        self.pair: list[float] = []
        self.pair_at: list[float] = []  # each pair's scheduled time (perf_counter), for --timeline
        self.put: list[float] = []
        self.get: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.waited = 0  # pairs due while the previous one was still in flight
        self.late: list[float] = []  # how late the generator's timer fired (its own lag)
        self.scheduled = 0


class TokenPair(asyncio.Protocol):
    """One VM's connection: a token PUT, then a GET with it; one pair in flight at a time."""

    def __init__(self, stats: Stats, instance_id: bytes | None = None) -> None:
        self.stats, self.instance_id = stats, instance_id
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.backlog: collections.deque[float] = collections.deque()
        self.busy, self.phase, self.due_at, self.sent = False, "", 0.0, 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def due(self, scheduled: float) -> None:
        """A pair is due (its scheduled time, on the perf_counter clock)."""
        if self.lost:
            return
        self.stats.scheduled += 1
        self.stats.late.append(time.perf_counter() - scheduled)
        if self.busy:
            self.stats.waited += 1
            self.backlog.append(scheduled)
            return
        self._put(scheduled)

    def _put(self, scheduled: float) -> None:
        self.busy, self.phase, self.due_at, self.sent = True, "put", scheduled, time.perf_counter()
        self.transport.write(PUT)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (got := parse(self.buf)) is not None:
            status, body, used = got
            del self.buf[:used]
            now = time.perf_counter()
            if self.phase == "put":
                self.stats.put.append(now - self.sent)
                if status != 200 or len(body) != 44:
                    self._done(f"token PUT answered {status}")
                    continue
                self.phase, self.sent = "get", now
                self.transport.write(get("/latest/meta-data/instance-id", body))
            else:
                self.stats.get.append(now - self.sent)
                if status != 200 or not body.startswith(b"i-") or (self.instance_id and body != self.instance_id):
                    self._done(f"GET answered {status} {body[:20]!r}")
                    continue
                self.instance_id = body
                self._done(None, now - self.due_at)

    def _done(self, error: str | None, latency: float | None = None) -> None:
        if error:
            self.stats.errors[error] += 1
        elif latency is not None:
            self.stats.pair.append(latency)
            self.stats.pair_at.append(self.due_at)
            if latency > TIMEOUT_S:
                self.stats.errors[f"pair answered later than {TIMEOUT_S:g} s"] += 1
        self.busy = False
        if self.backlog:
            self._put(self.backlog.popleft())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost:
            self.lost = True
            self.stats.errors[f"connection lost ({exc!r})"] += 1


async def connect(dc: RunningDatacenter, vm: str, factory, sockets: list[socket.socket], port: int = METADATA_PORT):
    """A connection from inside ``vm`` to its node's metadata server (the socket kept in
    ``sockets``: an open socket pins its namespace, the caller closes them); ``port``: the
    anchor's (bench/bare_tokens.py) instead of the server's."""
    sock = emulated_socket(names.vm_ns(dc.name, vm), socket.AF_INET, socket.SOCK_STREAM)
    sockets.append(sock)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, (METADATA_ADDRESS, port)), 5)
    return (await loop.create_connection(factory, sock=sock))[1]


async def tokens(dc: RunningDatacenter, duration: float, rate: float, profile: str | None = None,
                 anchor: int | None = None) -> dict:
    """Part 1: every VM runs token PUT + GET pairs, ``rate`` a second, for ``duration`` s
    (``profile``: py-spy records the daemon meanwhile, collapsed stacks in that file;
    ``anchor``: the PID of bench/bare_tokens.py's responder, loaded instead of the daemon)."""
    stats, sockets = Stats(), []
    gate = asyncio.Semaphore(128)

    async def one(vm: str) -> TokenPair:
        async with gate:
            return await connect(dc, vm, lambda: TokenPair(stats), sockets,
                                 METADATA_PORT if anchor is None else bare_tokens.PORT)

    try:
        pairs = await asyncio.gather(*(one(v.name) for v in dc.topology.vms))
        loop, rng = asyncio.get_running_loop(), random.Random(7)
        pid = daemon_pid(dc) if anchor is None else anchor
        idle0 = proc_cpu(pid)
        await asyncio.sleep(2.0)  # the daemon's own work (heartbeats, claims), to subtract
        idle = (proc_cpu(pid) - idle0) / 2.0
        spy = None
        if profile:  # py-spy reads the daemon's memory: it sends no traffic
            # --nonblocking, 250 Hz: stopping the daemon 500 times a second (py-spy's default)
            # made its p50 500 ms; the profile is then a little less exact, the load the same.
            spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--pid",
                                    str(pid), "--nonblocking", "--rate", "250", "--duration", str(int(duration)),
                                    "--format", "raw", "-o", profile], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        cpu0, own0, busy0, start = proc_cpu(pid), _own_cpu(), _machine_busy(), time.perf_counter()
        offset = loop.time() - start  # perf_counter -> loop clock
        count = int(duration * rate)

        def tick(p: TokenPair, k: int, at: float) -> None:  # one timer per VM at a time
            p.due(at)
            if k + 1 < count:
                loop.call_at(at + 1 / rate + offset, tick, p, k + 1, at + 1 / rate)

        for p in pairs:
            at = start + 0.5 + rng.random() / rate
            loop.call_at(at + offset, tick, p, 0, at)
        await asyncio.sleep(duration + 0.5 + 2 * TIMEOUT_S)
        cpu, own, busy1 = proc_cpu(pid) - cpu0, _own_cpu() - own0, _machine_busy()
        machine = 100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        if spy is not None:
            spy.wait(timeout=60)
        unanswered = sum(p.busy + len(p.backlog) for p in pairs)
        if unanswered:
            stats.errors["pairs never answered"] += unanswered
        for p in pairs:  # measured: their closing (or the server's going) is no error
            p.lost = True
            if p.transport is not None:
                p.transport.close()
        return {"vms": len(pairs), "stats": stats, "cpu": cpu, "idle": idle, "rate": rate, "client": own, "machine": machine,
                "seconds": duration + 0.5 + 2 * TIMEOUT_S}
    finally:
        for s in sockets:
            s.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> tuple[int, int]:
    """``(busy, total)`` jiffies of the whole machine (/proc/stat)."""
    with open("/proc/stat") as f:
        times = [int(x) for x in f.readline().split()[1:]]
    return sum(times) - times[3] - times[4], sum(times)


class Poller(asyncio.Protocol):
    """A keep-alive connection that answers one request at a time (futures in order)."""

    def __init__(self) -> None:
        self.buf, self.waiting = bytearray(), collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def ask(self, request: bytes) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        self.transport.write(request)
        return fut

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (got := parse(self.buf)) is not None:
            del self.buf[:got[2]]
            self.waiting.popleft().set_result(got[:2])

    def connection_lost(self, exc: Exception | None) -> None:
        while self.waiting:
            self.waiting.popleft().set_exception(ConnectionError(repr(exc)))


SCHEDULED = "/latest/meta-data/events/maintenance/scheduled"


async def token_of(p: Poller) -> bytes:
    status, body = await p.ask(PUT)
    assert status == 200, status
    return body


async def visibility(dc: RunningDatacenter, samples: int) -> tuple[list[float], int]:
    """Part 2: ``event add`` to the event visible at its VM, with every VM polling once a second."""
    stop, errors, sockets = asyncio.Event(), [0], []
    gate = asyncio.Semaphore(128)

    async def background(vm: str) -> None:
        try:
            async with gate:
                p = await connect(dc, vm, Poller, sockets)
            request = get(SCHEDULED, await token_of(p))
            await asyncio.sleep(random.random())
            while not stop.is_set():
                status, _ = await asyncio.wait_for(p.ask(request), TIMEOUT_S)
                errors[0] += status != 200
                await asyncio.sleep(1.0)
        except Exception:  # counted, not fatal: the table shows them
            errors[0] += 1

    tasks = [asyncio.create_task(background(v.name)) for v in dc.topology.vms]
    latencies = []
    try:
        await asyncio.sleep(3)
        for vm in random.Random(7).sample([v.name for v in dc.topology.vms], samples):
            p = await connect(dc, vm, Poller, sockets)
            request = get(SCHEDULED, await token_of(p))
            start = time.perf_counter()
            fut = asyncio.ensure_future(control(dc, "event_add", vm=vm, type="system-reboot", **{"in": 3600}))
            shown = None
            while True:
                _, body = await p.ask(request)
                if shown is None and fut.done():
                    shown = fut.result()["event"]["shown_id"].encode()
                if shown and shown in body:
                    latencies.append(time.perf_counter() - start)
                    break
                await asyncio.sleep(0.005)
            p.transport.close()
            await control(dc, "cancel", id=fut.result()["event"]["event_id"])  # one pending at a time
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for s in sockets:
            s.close()
    return latencies, errors[0]


def row(label: str, value: object, goal: str = "") -> None:
    """One line of the table."""
    print(f"{label:<60} {value!s:>10}  {goal}".rstrip())


def ms(values: list[float], p: float | None = None) -> float:
    if not values:
        return float("nan")
    return 1000 * (statistics.median(values) if p is None else pct(values, p))


def cpu_per_request(t: dict) -> float:
    """Microseconds of the server's CPU per request of a token load (its idle work subtracted)."""
    return 1e6 * (t["cpu"] - t["idle"] * t["seconds"]) / max(2 * len(t["stats"].pair), 1)


def errors_rows(label: str, s: Stats) -> None:
    """The errors row of a token load, and its commonest errors."""
    row(label, sum(s.errors.values()), "0")
    for what, n in s.errors.most_common(5):
        print(f"    {n} x {what}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 x 10 VMs, 5 s of load, 20 samples")
    ap.add_argument("--duration", type=float, default=None, help="seconds of token load (default 30)")
    ap.add_argument("--samples", type=int, default=None, help="event-add samples (default 200)")
    ap.add_argument("--rate", type=float, default=RATE, help=f"token PUT + GET pairs per second per VM "
                                                             f"(default {RATE:g}: 5 requests a second)")
    ap.add_argument("--skip", choices=("tokens", "events"), help="leave one part out")
    ap.add_argument("--profile", metavar="FILE", help="py-spy samples of the daemon during the token load")
    ap.add_argument("--no-anchor", action="store_true", help="leave out the anchor: the same token load "
                                                             "against a bare responder (bench/bare_tokens.py)")
    ap.add_argument("--timeline", metavar="FILE", help="each pair's scheduled time and latency (s), one a line")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/aws.py needs root", file=sys.stderr)
        return 2
    os.environ["NETSIM_STATE_DIR"] = tempfile.mkdtemp(prefix="netsim-bench-")
    nodes = 10 if args.quick else 100
    duration = args.duration or (5.0 if args.quick else 20.0)
    samples = args.samples or (20 if args.quick else 200)
    factory, loop_name = loop_factory()
    built = time.monotonic()
    dc = up(grid("baws", nodes, 10, linklocal="static", cloud="aws", location="us-east-1"))
    built = time.monotonic() - built
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            t = runner.run(tokens(dc, duration, args.rate, args.profile)) if args.skip != "tokens" else None
            a = None
            if t is not None and not args.no_anchor:
                root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
                with bare_tokens.bare_responder(root, [names.node_ns(dc.name, n.name) for n in dc.topology.nodes]) as pid:
                    a = runner.run(tokens(dc, duration, args.rate, anchor=pid))
            v = runner.run(visibility(dc, samples)) if args.skip != "events" else None
    finally:
        dc.down()
    print(f"aws datacenter of {nodes * 10} VMs built in {built:.1f} s; client loop {loop_name}")
    row("figure", "value", "goal")
    if t is not None:
        s: Stats = t["stats"]
        if args.timeline:
            with open(args.timeline, "w") as f:
                first = min(s.pair_at, default=0.0)
                f.writelines(f"{at - first:.6f} {lat:.6f}\n" for at, lat in zip(s.pair_at, s.pair))
        pairs = len(s.pair)
        row(f"VMs, each a token PUT + GET pair {t['rate']:g} times a second", t["vms"])
        row("pairs answered / scheduled", f"{pairs}/{s.scheduled}")
        row("pair (scheduled -> GET answered), p50 (ms)", f"{ms(s.pair):.2f}")
        row("pair (scheduled -> GET answered), p99 (ms)", f"{ms(s.pair, 99):.2f}", "<= 20")
        row("pair, max (ms)", f"{1000 * max(s.pair, default=float('nan')):.2f}")
        row("token PUT alone, p99 (ms)", f"{ms(s.put, 99):.2f}")
        row("GET with the token alone, p99 (ms)", f"{ms(s.get, 99):.2f}")
        row("pairs due while the previous one was in flight", s.waited)
        slow = [at for at, lat in zip(s.pair_at, s.pair) if lat > 0.020]
        # Few windows: the p99 is made of stalls (the machine's other work), not of a queue.
        windows = len({int(at * 10) for at in slow})
        row("pairs later than 20 ms / the 100-ms windows they were due in", f"{len(slow)}/{windows}")
        row("generator's own lag (timer fired late), p99 (ms)", f"{ms(s.late, 99):.2f}")
        errors_rows("errors", s)
        row("daemon CPU per request, its idle work subtracted (us)", f"{cpu_per_request(t):.1f}")
        row("daemon CPU under load / idle (cores)", f"{t['cpu'] / t['seconds']:.2f} / {t['idle']:.2f}")
        row("load generator CPU (cores)", f"{t['client'] / t['seconds']:.2f}")
        row("whole machine busy during the load (% of all CPUs)", f"{t['machine']:.0f}")
        if a is not None:  # the same load, the same run, against bench/bare_tokens.py
            b: Stats = a["stats"]
            row("anchor (bare responder, same load): pair p50 (ms)", f"{ms(b.pair):.2f}")
            row("anchor: pair p99 (ms)", f"{ms(b.pair, 99):.2f}")
            errors_rows("anchor: errors", b)
            row("anchor: CPU per request (us)", f"{cpu_per_request(a):.1f}")
            row("ours / anchor: pair p99", f"{ms(s.pair, 99) / ms(b.pair, 99):.2f}")
            row("ours / anchor: CPU per request", f"{cpu_per_request(t) / max(cpu_per_request(a), 1e-9):.2f}")
    if v is not None:
        latencies, errors = v
        row("VMs polling events/maintenance/scheduled once a second", nodes * 10)
        row("event add -> visible at the VM, p50 (ms)", f"{ms(latencies):.1f}")
        row("event add -> visible at the VM, p99 (ms)", f"{ms(latencies, 99):.1f}", "<= 50")
        row("event add -> visible at the VM, max (ms)", f"{1000 * max(latencies):.1f}")
        row("background poll errors", errors, "0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
