#!/usr/bin/env python3
"""Start N nodes x M VMs claiming link-local addresses together; print one table row per run.

Run as root: .venv/bin/python bench/linklocal.py [--nodes 100] [--vms-per-node 10] [--fast F] [--runs N]

The namespaces come from :class:`netsim.harness.testbed.Testbed` (named ``nsim-llbench-<pid>-``)
and are removed at the end. The driver runs in this process's main thread and nothing
else runs in it, so the process CPU and RSS deltas are the driver's. A forked child
captures every ARP frame on every node bridge (kernel timestamps) to check the RFC
windows independently of the driver's own counters.

Columns: VMs; timer profile; seconds from the first add() until the last VM bound;
slowest single claim (its add() to its Bind); add() cost per VM; conflict-free claims
with exactly PROBE_NUM probes and ANNOUNCE_NUM announcements on the wire; frames whose
spacing left the RFC windows (20 ms early / 80 ms late tolerance); driver CPU
core-seconds per 100 claims; driver memory (RSS growth) per VM.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from netsim.linklocal import RFC_TIMERS, Bind, ClaimState, first_candidate  # noqa: E402
from netsim.linklocal.arp import decode_frame  # noqa: E402
from netsim.linklocal.driver import LinkLocalDriver  # noqa: E402
from netsim.harness.testbed import Testbed  # noqa: E402

SO_TIMESTAMPNS = 35
TOL_EARLY, TOL_LATE = 0.02, 0.08


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def capture(lab: Testbed, conn) -> None:
    """Child process: record (ts, frame) from every node bridge until told to stop."""
    socks = []
    for i in range(lab.n_nodes):
        s = lab.socket_in_node(i)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setblocking(False)
        socks.append(s)
    frames: list[tuple[float, bytes]] = []
    conn.send("ready")
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    by_fd = {s.fileno(): s for s in socks}
    while not conn.poll():
        for fd, _ in poller.poll(0.05):
            s = by_fd[fd]
            while True:
                try:
                    data, anc, _, _ = s.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                sec, nsec = struct.unpack("qq", anc[0][2][:16]) if anc else (0, 0)
                frames.append((sec + nsec / 1e9, data))
    conn.send(frames)


def check_windows(frames: list[tuple[float, bytes]], timers, addresses: dict[str, str]) -> tuple[int, int, int]:
    """(claims with exactly PROBE_NUM+ANNOUNCE_NUM frames, VMs seen, frames outside the windows)."""
    by_mac: dict[str, list] = defaultdict(list)
    for ts, raw in frames:
        pkt = decode_frame(raw)
        if pkt is not None:
            by_mac[pkt.sha].append((ts, pkt))
    exact = bad = 0
    worst = {"early": 0.0, "late": 0.0}

    def within(gap: float, low: float, high: float) -> bool:
        worst["early"] = max(worst["early"], low - gap)
        worst["late"] = max(worst["late"], gap - high)
        return low - TOL_EARLY <= gap <= high + TOL_LATE

    for mac, seen in by_mac.items():
        seen.sort(key=lambda x: x[0])
        probes = [ts for ts, p in seen if p.is_probe]
        anns = [ts for ts, p in seen if p.is_announcement]
        if len(probes) == timers.PROBE_NUM and len(anns) == timers.ANNOUNCE_NUM and \
                all(p.tpa == addresses.get(mac) for _, p in seen):
            exact += 1
        for a, b in zip(probes, probes[1:]):
            bad += not within(b - a, timers.PROBE_MIN, timers.PROBE_MAX)
        if probes and anns:
            bad += not within(anns[0] - probes[-1], timers.ANNOUNCE_WAIT, timers.ANNOUNCE_WAIT)
        for a, b in zip(anns, anns[1:]):
            bad += not within(b - a, timers.ANNOUNCE_INTERVAL, timers.ANNOUNCE_INTERVAL)
    return exact, len(by_mac), bad, worst


def one_run(nodes: int, per_node: int, factor: float, profile: str | None = None) -> dict:
    timers = RFC_TIMERS.scaled(factor)
    lab = Testbed(f"nsim-llbench-{os.getpid()}-", nodes, per_node, mac_tag=0x4b)
    t_build = time.perf_counter()
    lab.build()
    t_build = time.perf_counter() - t_build
    try:
        # Same-node collisions of first candidates are real conflicts (RFC behaviour).
        expected_conflicts = 0
        for i in range(nodes):
            firsts = [first_candidate(vm.mac) for vm in lab.vms[i * per_node:(i + 1) * per_node]]
            expected_conflicts += len(firsts) - len(set(firsts))
        parent, child = mp.get_context("fork").Pipe()
        cap = mp.get_context("fork").Process(target=capture, args=(lab, child), daemon=True)
        cap.start()
        if not parent.poll(30) or parent.recv() != "ready":
            raise RuntimeError("the capture process did not start")

        macs = {vm.name: vm.mac for vm in lab.vms}
        bound_at: dict[str, float] = {}
        added_at: dict[str, float] = {}
        rss0, cpu0 = rss_kb(), cpu_s()
        driver = LinkLocalDriver(timers=timers,
                                 listener=lambda vm, a: isinstance(a, Bind) and bound_at.setdefault(vm, time.monotonic()))
        if profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        t0 = time.monotonic()
        for vm in lab.vms:
            added_at[vm.name] = time.monotonic()
            driver.add(vm.name, vm.ns)
        t_added = time.monotonic() - t0
        n = len(lab.vms)
        limit = t0 + 10 * timers.RATE_LIMIT_INTERVAL
        next_check = 0.0
        while time.monotonic() < limit:
            driver.step(0.5)
            if time.monotonic() >= next_check:  # status() walks every VM: poll it sparingly
                next_check = time.monotonic() + 0.1
                if all(s is ClaimState.BOUND for s, _ in driver.status().values()):
                    break
        cpu1, rss1 = cpu_s(), rss_kb()
        if profile:
            prof.disable()
            prof.dump_stats(profile)
        status = driver.status()
        sent = driver.sent()
        time.sleep(0.2)
        parent.send("stop")
        frames = parent.recv() if parent.poll(60) else []
        cap.join(5)
        t_close = time.monotonic()
        driver.close()
        t_close = time.monotonic() - t_close
    finally:
        lab.close()
    addresses = {macs[name]: addr for name, (_, addr) in status.items()}
    exact, seen, bad, worst = check_windows(frames, timers, addresses)
    per_node_addrs: dict[str, set] = defaultdict(set)
    distinct = True
    for name, (_, addr) in status.items():
        node = name.split("v")[0]
        distinct &= addr not in per_node_addrs[node]
        per_node_addrs[node].add(addr)
    return {
        "vms": n, "profile": timers.profile, "build": t_build,
        "all_bound": max(bound_at.values()) - t0 if len(bound_at) == n else float("nan"),
        "slowest": max(bound_at[v] - added_at[v] for v in bound_at),
        "add_ms": 1000 * t_added / n,
        "exact": exact, "expected_clean": n - expected_conflicts, "seen": seen, "bad": bad,
        "driver_exact": sum(s == (timers.PROBE_NUM, timers.ANNOUNCE_NUM, 0) for s in sent.values()),
        "cpu_per_100": (cpu1 - cpu0) / (n / 100), "kb_per_vm": (rss1 - rss0) / n,
        "distinct": distinct, "bound": sum(s is ClaimState.BOUND for s, _ in status.values()),
        "conflicts": expected_conflicts, "worst_early_ms": 1000 * worst["early"],
        "worst_late_ms": 1000 * worst["late"], "close_s": t_close,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--vms-per-node", type=int, default=10)
    ap.add_argument("--fast", type=float, default=1.0, help="divide RFC intervals by this (1 = RFC timers)")
    ap.add_argument("--runs", type=int, default=1, help="each run is a fresh process (clean RSS and caches)")
    ap.add_argument("--profile", help="write a cProfile of the driver to this file (slows it down)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/linklocal.py needs root", file=sys.stderr)
        return 2
    if not args.one:
        print(f"{'VMs':>5} {'timers':>8} {'build s':>7} {'all bound s':>11} {'slowest s':>9} {'add ms/VM':>9} "
              f"{'exact 3+2':>11} {'bad gaps':>8} {'CPU s/100':>9} {'KB/VM':>6} {'distinct':>8}", flush=True)
        rc = 0
        for _ in range(args.runs):
            rc |= subprocess.run([sys.executable, __file__, "--one", *sys.argv[1:]]).returncode
        return rc
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.nodes * (args.vms_per_node + 1) + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    r = one_run(args.nodes, args.vms_per_node, args.fast, args.profile)
    print(f"{r['vms']:>5} {r['profile']:>8} {r['build']:>7.2f} {r['all_bound']:>11.2f} {r['slowest']:>9.2f} "
          f"{r['add_ms']:>9.3f} {str(r['exact']) + '/' + str(r['expected_clean']):>11} {r['bad']:>8} "
          f"{r['cpu_per_100']:>9.3f} {r['kb_per_vm']:>6.1f} {str(r['distinct']):>8}")
    print(f"      spacing vs RFC windows: worst early {r['worst_early_ms']:.1f} ms, worst late "
          f"{r['worst_late_ms']:.1f} ms; driver-counted exact claims {r['driver_exact']}; "
          f"bound {r['bound']}/{r['vms']}; driver.close() {r['close_s']:.2f} s", flush=True)
    return 0 if r["bound"] == r["vms"] and r["distinct"] else 1


if __name__ == "__main__":
    sys.exit(main())
