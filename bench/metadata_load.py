"""Benchmark, part 2: a whole datacenter's VMs polling their nodes' metadata servers.

    sudo .venv/bin/python bench/metadata.py load [--nodes 100] [--vms-per-node 10] [--duration 30]
    sudo .venv/bin/python bench/metadata.py load --quick          # 10 x 10 VMs, 5 s

Builds a real datacenter (``grid`` with static link-local addresses) and starts its
daemon, which serves 169.254.169.254:80 on every node. ONE asyncio process then opens
one keep-alive HTTP/1.1 connection per VM, each socket created inside that VM's
namespace (``netsim.kernel.safety.emulated_socket``), and every VM sends ``GET
/metadata/scheduledevents`` with ``Metadata: true`` at Azure's limit of 5 requests/s,
evenly spaced with a random phase per VM (open loop: a request goes out on schedule even
if the previous answer is late; HTTP/1.1 pipelining then queues it). Latency is from
the request's write to the last byte of its response. Errors are non-200 answers
(e.g. 429 from the per-VM rate limiter), answers later than ``--timeout``, answers that
never came, and connections reset or closed. CPU is read from /proc: the daemon's
utime+stime (its PID from the datacenter's journal), this process's, and the whole
machine's busy time. The run stops by itself, and the datacenter is torn down in a
``finally``. No traffic starts in the host's namespace.

Goal: p99 <= 20 ms and 0 errors. ``--profile DIR`` also records the daemon and this
process with py-spy (collapsed stacks), which perturbs the figures a little.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from netsim.api import datacenter
from netsim.model import names
from netsim.kernel import procfs, safety
from netsim.model import grid
from netsim_imds.address import METADATA_ADDRESS, METADATA_PORT

METADATA = (METADATA_ADDRESS, METADATA_PORT)
PATH = "/metadata/scheduledevents?api-version=2020-07-01"
REQUEST = (f"GET {PATH} HTTP/1.1\r\nHost: {METADATA_ADDRESS}\r\nMetadata: true\r\n"
           "User-Agent: netsim-bench\r\n\r\n").encode()
# ``--cloud gcp``: GCE's own key, with its header (what a GCE VM's agents GET most).
GCE_PATH = "/computeMetadata/v1/instance/maintenance-event"
GCE_REQUEST = (f"GET {GCE_PATH} HTTP/1.1\r\nHost: metadata.google.internal\r\nMetadata-Flavor: Google\r\n"
               "User-Agent: netsim-bench\r\n\r\n").encode()
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_P99_MS = 20.0


class Stats:
    """What every poller records: latencies (with their send offset) and error counts."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.latency: list[float] = []   # seconds, every answer that came
        self.sent_at: list[float] = []   # seconds after the start, same order as latency
        self.lateness: list[float] = []  # how late the generator sent each request vs its schedule
        self.errors: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.ok = 0  # 200 answers within the timeout
        self.pipelined = 0  # requests sent while an earlier one was still unanswered
        self.bad_body = 0


class Poller(asyncio.Protocol):
    """One VM's keep-alive connection: sends on schedule, matches answers in order.
    ``request`` is what it sends, ``expect`` what the first 200 answer's body must hold."""

    request, expect = REQUEST, b'"DocumentIncarnation"'

    def __init__(self, stats: Stats, start: float) -> None:
        self.stats, self.start = stats, start
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: collections.deque[float] = collections.deque()
        self.checked = False
        self.closed = False
        self.closing = False  # we close it ourselves at the end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, scheduled: float) -> None:
        """Write one request now (it was due at ``scheduled``, loop time)."""
        st = self.stats
        if self.closed or self.transport is None:
            st.errors["connection down"] += 1
            return
        now = time.monotonic()
        st.lateness.append(now - scheduled)
        if self.pending:
            st.pipelined += 1
        self.pending.append(now)
        st.sent += 1
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf
        buf += data
        st = self.stats
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            i = head.find(b"\r\ncontent-length:")
            length = 0
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17:j if j >= 0 else len(head)])
            if len(buf) < end + 4 + length:
                return
            status = int(head[9:12])
            body = bytes(buf[end + 4:end + 4 + length])
            del buf[:end + 4 + length]
            if not self.pending:
                st.errors["unsolicited answer"] += 1
                continue
            t0 = self.pending.popleft()
            latency = now - t0
            st.latency.append(latency)
            st.sent_at.append(t0 - self.start)
            if status != 200:
                st.errors[f"HTTP {status}"] += 1
            elif latency > st.timeout:
                st.errors["timeout"] += 1
            else:
                st.ok += 1
            if status == 200 and not self.checked:
                self.checked = True  # the first 200 of each VM must be the real document
                if self.expect not in body:
                    st.bad_body += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.closing:
            return
        self.stats.errors["reset" if exc else "closed by server"] += 1
        if self.pending:
            self.stats.errors["no answer (connection lost)"] += len(self.pending)
        self.pending.clear()


NEIGH_THRESH = "/proc/sys/net/ipv4/neigh/default/gc_thresh{}"


def raise_neigh_limits(vms: int) -> dict[str, tuple[str, str]]:
    """Raise the host's ARP cache limits for ``vms`` VMs; return the old values to restore.

    The kernel has ONE ARP table for all namespaces and its limits (``gc_thresh1/2/3``,
    default 128/512/1024) exist only in the host's namespace. A VM holds an entry for
    169.254.169.254 and its node one for the VM, so 1,000 VMs need over 2,000 entries:
    past gc_thresh3 new entries fail ("table_fulls" in /proc/net/stat/arp_cache) and
    SYNs are lost for seconds. Mininet's ``fixLimits()`` raises them the same way.
    """
    changed = {}
    for n, floor in ((1, 4096), (2, 8192), (3, 16384)):
        path = NEIGH_THRESH.format(n)
        with open(path) as f:
            old = f.read().strip()
        want = max(int(old), floor, vms * 2 ** (n + 1))
        if want != int(old):
            with open(path, "w") as f:
                f.write(str(want))
            changed[path] = (old, str(want))
    return changed


def restore(changed: dict[str, tuple[str, str]]) -> None:
    """Undo :func:`raise_neigh_limits`, leaving alone a value someone else changed since."""
    for path, (old, ours) in changed.items():
        with open(path) as f:
            if f.read().strip() != ours:
                continue
        with open(path, "w") as f:
            f.write(old)


def proc_cpu(pid: int) -> float:
    """CPU seconds (utime + stime, all threads) of a process."""
    return procfs.cpu_seconds(pid)


def machine_times() -> list[int]:
    """The machine's ``cpu`` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


async def sample_timeline(start: float, seconds: int, server_pid: int, out: list[tuple]) -> None:
    """Once a second from ``start``: (time, server CPU s, generator CPU s, /proc/stat cpu line)."""
    loop = asyncio.get_running_loop()
    for k in range(seconds + 1):
        await asyncio.sleep(max(0.0, start + k - loop.time()))
        out.append((loop.time() - start, proc_cpu(server_pid), proc_cpu(os.getpid()), machine_times()))


def print_timeline(st: "Stats", samples: list[tuple]) -> None:
    """Per second of the run: answers, slow answers, worst latency, and where the CPU went."""
    by_second: dict[int, list[float]] = collections.defaultdict(list)
    for x, at in zip(st.latency, st.sent_at):
        by_second[int(at)].append(x)
    print(f"  {'s':>3} {'answers':>7} {'>20ms':>6} {'max ms':>7} {'server':>7} {'gen':>5} {'busy':>5} "
          f"{'softirq':>7} {'steal':>5} {'other':>6}   (CPU in % of one core)")
    for (t0, s0, g0, m0), (t1, s1, g1, m1) in zip(samples, samples[1:]):
        sec = int(round(t0))
        lat = by_second.get(sec, [])
        dt = t1 - t0
        d = [(b - a) / CLK_TCK / dt * 100 for a, b in zip(m0, m1)]
        busy = sum(d) - d[3] - d[4]
        server, gen = (s1 - s0) / dt * 100, (g1 - g0) / dt * 100
        print(f"  {sec:>3} {len(lat):>7} {sum(1 for x in lat if x > 0.020):>6} "
              f"{1000 * max(lat, default=0):>7.1f} {server:>6.0f}% {gen:>4.0f}% {busy:>4.0f}% "
              f"{d[6]:>6.0f}% {d[7]:>4.0f}% {busy - server - gen:>5.0f}%")


def daemon_pid(running: datacenter.RunningDatacenter) -> int:
    """The daemon's PID, from the journal row ``pid PID STARTTIME daemon``."""
    rows = [r for r in running.state.read_journal() if r[0] == "pid" and r[-1] == "daemon"]
    if not rows:
        raise RuntimeError("the datacenter's journal names no daemon")
    return int(rows[-1][1])


async def connect_all(dc: str, vms: list[str], stats: Stats, sockets: list[socket.socket]) -> list[Poller]:
    """One connection per VM, each socket born in that VM's namespace (and kept in
    ``sockets``, so the caller can close every one: an open socket pins its namespace).
    A VM that cannot connect within 5 s counts as an error and sends nothing."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(128)

    async def one(vm: str) -> Poller | None:
        sock = safety.emulated_socket(names.vm_ns(dc, vm), socket.AF_INET, socket.SOCK_STREAM)
        sockets.append(sock)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async with gate:
                await asyncio.wait_for(loop.sock_connect(sock, METADATA), 5)
        except (OSError, asyncio.TimeoutError) as exc:
            stats.errors[f"connect failed ({type(exc).__name__})"] += 1
            sock.close()
            return None
        _, proto = await loop.create_connection(lambda: Poller(stats, 0.0), sock=sock)
        return proto  # type: ignore[return-value]

    return [p for p in await asyncio.gather(*(one(vm) for vm in vms)) if p is not None]


async def drive(running: datacenter.RunningDatacenter, args: argparse.Namespace, server_pid: int) -> dict:
    """Connect, run the schedule, drain, and return the raw figures; closes every socket."""
    sockets: list[socket.socket] = []
    try:
        return await _drive(running, args, server_pid, sockets)
    finally:
        for sock in sockets:
            sock.close()


async def warm_up(pollers: list[Poller], stats: Stats) -> tuple[float, int, float]:
    """One request per VM, answered before the window: the server resolves each
    connection's VM on its first request. Returns (seconds, errors, slowest answer)."""
    loop = asyncio.get_running_loop()
    t = loop.time()
    for p in pollers:
        p.send(loop.time())
    while any(p.pending for p in pollers) and loop.time() - t < 10:
        await asyncio.sleep(0.01)
    return loop.time() - t, sum(stats.errors.values()), max(stats.latency, default=0.0)


async def _drive(running: datacenter.RunningDatacenter, args: argparse.Namespace, server_pid: int,
                 sockets: list[socket.socket]) -> dict:
    """The body of :func:`drive`; every socket it opens is appended to ``sockets``."""
    loop = asyncio.get_running_loop()
    vms = [v.name for v in running.topology.vms]
    stats = Stats(args.timeout)
    interval = 1.0 / args.rate
    per_vm = round(args.duration * args.rate)
    start = loop.time() + 1.0  # leaves time to connect everything before the first send
    t = time.monotonic()
    pollers = await connect_all(running.name, vms, stats, sockets)
    connect_s = time.monotonic() - t
    warmup = None
    if args.warmup:
        warmup = await warm_up(pollers, stats)
        stats = Stats(args.timeout)
        start = loop.time() + 1.0  # a second refills every VM's token bucket
    elif loop.time() > start - 0.2:  # connecting was slow: move the start, keep the schedule
        start = loop.time() + 0.5
    for p in pollers:
        p.stats, p.start, p.checked = stats, start, False
        p.pending.clear()
    rng = random.Random(args.seed)

    def tick(p: Poller, k: int, at: float) -> None:
        p.send(at)
        if k + 1 < per_vm:
            loop.call_at(at + interval, tick, p, k + 1, at + interval)

    for p in pollers:
        first = start + rng.random() * interval
        loop.call_at(first, tick, p, 0, first)
    profilers = start_profilers(args.profile, server_pid, args.duration) if args.profile else []
    samples: list[tuple] = []
    sampler = (asyncio.create_task(sample_timeline(start, int(args.duration) + 1, server_pid, samples))
               if args.timeline else None)
    await asyncio.sleep(max(0.0, start - loop.time()))
    cpu0 = (proc_cpu(server_pid), proc_cpu(os.getpid()), machine_times(), time.monotonic())
    last_send = start + interval + (per_vm - 1) * interval
    await asyncio.sleep(max(0.0, last_send + 0.05 - loop.time()))
    drain_until = loop.time() + args.timeout
    while loop.time() < drain_until and any(p.pending for p in pollers):
        await asyncio.sleep(0.01)
    cpu1 = (proc_cpu(server_pid), proc_cpu(os.getpid()), machine_times(), time.monotonic())
    if sampler is not None:
        await sampler
    for p in pollers:
        if p.pending:
            stats.errors["no answer (timeout)"] += len(p.pending)
        p.pending.clear()
        p.closing = True
        if p.transport is not None:
            p.transport.close()
    for proc in profilers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
    await asyncio.sleep(0)
    return {"stats": stats, "samples": samples, "warmup": warmup, "connect_s": connect_s,
            "cpu0": cpu0, "cpu1": cpu1, "vms": len(vms), "per_vm": per_vm}


def start_profilers(folder: str, server_pid: int, duration: float) -> list[subprocess.Popen]:
    """py-spy on the daemon and on this process, for the load window (collapsed stacks)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    os.makedirs(folder, exist_ok=True)
    procs = []
    for who, pid in (("server", server_pid), ("generator", os.getpid())):
        argv = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))), "--rate", "200",
                "--nonblocking", "--idle", "--format", "raw", "--output", os.path.join(folder, f"{who}.txt")]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list (nan if empty)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values))) - 1))]


def report(run: dict, args: argparse.Namespace, build_s: float) -> bool:
    """Print the table of one run; True if the goal is met."""
    st: Stats = run["stats"]
    (s0, g0, m0, t0), (s1, g1, m1, t1) = run["cpu0"], run["cpu1"]
    wall = t1 - t0
    busy = [sum(m) - m[3] - m[4] for m in (m0, m1)]  # all but idle and iowait
    lat = sorted(st.latency)
    errors = sum(st.errors.values()) + st.bad_body
    target = run["vms"] * args.rate
    ms = [1000 * pct(lat, q) for q in (50, 90, 99)] + [1000 * lat[-1] if lat else float("nan")]
    late = sorted(st.lateness)
    steady = sorted(x for x, at in zip(st.latency, st.sent_at) if at >= 1.0)
    print(f"\n{run['vms']} VMs on {args.nodes} nodes, {args.rate:g} req/s each, {args.duration:g} s "
          f"(build {build_s:.1f} s, connect {run['connect_s']:.2f} s)")
    if run["warmup"]:
        took, bad, worst = run["warmup"]
        print(f"  warm-up (one request per VM, not counted): all answered in {took:.2f} s, "
              f"slowest {1000 * worst:.0f} ms, {bad} errors")
    print(f"{'target/s':>9} {'achieved/s':>10} {'requests':>9} {'errors':>7} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'server CPU':>11} {'generator CPU':>13} {'machine':>8}")
    machine = 100 * (busy[1] - busy[0]) / max(1, sum(m1) - sum(m0))
    print(f"{target:>9,.0f} {st.ok / args.duration:>10,.0f} {st.sent:>9,} {errors:>7,} {ms[0]:>7.2f} {ms[1]:>7.2f} "
          f"{ms[2]:>7.2f} {ms[3]:>7.1f} {s1 - s0:>6.1f} s {100 * (s1 - s0) / wall:>3.0f}%"
          f" {g1 - g0:>6.1f} s {100 * (g1 - g0) / wall:>4.0f}% {machine:>7.0f}%")
    print(f"  server {1e6 * (s1 - s0) / max(1, st.sent):.0f} us CPU/request, generator "
          f"{1e6 * (g1 - g0) / max(1, st.sent):.0f} us; machine busy % is of all {os.cpu_count()} CPUs")
    print(f"  errors: {dict(st.errors) or 0}" + (f", bad first body: {st.bad_body}" if st.bad_body else ""))
    print(f"  after the first second: p99 {1000 * pct(steady, 99):.2f} ms, max "
          f"{1000 * (steady[-1] if steady else float('nan')):.1f} ms; generator send lateness p99 "
          f"{1000 * pct(late, 99):.2f} ms, max {1000 * (late[-1] if late else float('nan')):.1f} ms; "
          f"pipelined sends {st.pipelined}")
    worst = collections.Counter()
    for x, at in zip(st.latency, st.sent_at):
        if x * 1000 > GOAL_P99_MS:
            worst[int(at)] += 1
    if worst:
        print("  answers slower than 20 ms by second of the run: "
              + ", ".join(f"{s}s:{n}" for s, n in sorted(worst.items())))
    if run["samples"]:
        print_timeline(st, run["samples"])
    met = errors == 0 and ms[2] <= GOAL_P99_MS and st.sent == run["vms"] * run["per_vm"]
    print(f"  goal p99 <= {GOAL_P99_MS:g} ms and 0 errors: {'met' if met else 'NOT met'}")
    return met


def main(argv: list[str] | None = None) -> int:
    """Build the datacenter, run the load once per --rounds, print the tables, tear down."""
    ap = argparse.ArgumentParser(prog="bench/metadata.py load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100, help="nodes (default 100)")
    ap.add_argument("--vms-per-node", type=int, default=10, help="VMs per node (default 10)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    ap.add_argument("--rate", type=float, default=5.0, help="requests/s per VM (default 5, Azure's limit)")
    ap.add_argument("--timeout", type=float, default=2.0, help="an answer later than this is an error (2 s)")
    ap.add_argument("--rounds", type=int, default=1, help="load runs on the same datacenter (default 1)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the per-VM phases (default random)")
    ap.add_argument("--name", default="mdload", help="datacenter name (default mdload)")
    ap.add_argument("--quick", action="store_true", help="a fast check: 10 x 10 VMs for 5 s")
    ap.add_argument("--cloud", choices=("azure", "gcp"), default="azure",
                    help="the flavor served; gcp GETs instance/maintenance-event with Metadata-Flavor: Google")
    ap.add_argument("--profile", metavar="DIR", help="also record py-spy profiles of both processes in DIR")
    ap.add_argument("--warmup", action="store_true",
                    help="one uncounted request per VM first (the server resolves callers on first requests)")
    ap.add_argument("--timeline", action="store_true", help="also print a per-second table (latency, CPU)")
    ap.add_argument("--keep-neigh-limits", action="store_true",
                    help="do not raise the host's ARP cache limits for the run (shows the SYN losses)")
    args = ap.parse_args(argv)
    if args.quick:
        args.nodes, args.vms_per_node, args.duration = 10, 10, 5.0
    if os.geteuid() != 0:
        print("bench/metadata.py load needs root (it builds namespaces)", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="netsim-mdload-")
    os.environ["NETSIM_STATE_DIR"] = root
    # SIGTERM unwinds like Ctrl-C, so the finally below always tears the datacenter down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    running = None
    met = True
    saved: dict[str, tuple[str, str]] = {}
    try:
        if not args.keep_neigh_limits:
            saved = raise_neigh_limits(args.nodes * args.vms_per_node)
            print("host ARP cache limits gc_thresh1/2/3 for this run: "
                  + "/".join(open(NEIGH_THRESH.format(n)).read().strip() for n in (1, 2, 3))
                  + (" (restored at the end)" if saved else ""))
        gcp = {"cloud": "gcp", "location": "us-central1-a"} if args.cloud == "gcp" else {}
        if gcp:
            Poller.request, Poller.expect = GCE_REQUEST, b"NONE"
        topo = grid(args.name, args.nodes, args.vms_per_node, linklocal="static", **gcp)
        t = time.monotonic()
        running = datacenter.up(topo)
        build_s = time.monotonic() - t
        pid = daemon_pid(running)
        for r in range(args.rounds):
            if r:
                time.sleep(1.5)  # let every VM's token bucket refill between rounds
            met &= report(asyncio.run(drive(running, args, pid)), args, build_s)
    finally:
        try:
            if running is not None:
                running.down()
        finally:
            shutil.rmtree(root, ignore_errors=True)
            restore(saved)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
