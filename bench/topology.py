#!/usr/bin/env python3
"""Build and tear down N nodes x 10 VMs; print build/teardown time, per-VM cost, RSS, fds.

Run as root: .venv/bin/python bench/topology.py [--nodes 1 10 50 100] [--vms-per-node 10]
Each row is the median of --runs runs. It measures the kernel objects alone (static
link-local addresses, no daemon); bench/linklocal.py measures claiming. Teardown
includes waiting until the kernel has really destroyed every namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from netsim.api import datacenter as dcapi  # noqa: E402
from netsim.model import names
from netsim.kernel import netns  # noqa: E402
from netsim.model import grid  # noqa: E402
from netsim.model.validate import validate  # noqa: E402


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def one_run(nodes: int, per_node: int, containers: int = 0) -> tuple[float, float, int, int]:
    """Build and remove ``nodes`` x ``per_node`` VMs (each with ``containers`` containers):
    (build s, teardown s, peak open fds, VMs)."""
    topo = grid(f"bench{nodes % 1000}"[:8], nodes, per_node, linklocal="static")
    if containers:
        topo = dataclasses.replace(topo, vms=tuple(
            dataclasses.replace(v, containers=tuple(f"c{i + 1}" for i in range(containers))) for v in topo.vms))
        validate(topo)
    peak_fds = 0

    def progress(what, done, total):
        nonlocal peak_fds
        if done % 50 == 0:
            peak_fds = max(peak_fds, open_fds())

    t0 = time.perf_counter()
    running = dcapi.up(topo, progress=progress, daemon=False)
    t1 = time.perf_counter()
    removed = running.down()
    t2 = time.perf_counter()
    assert removed == nodes * (per_node * (1 + containers) + 1) + 4, removed
    assert not netns.list_names(names.dc_prefix(topo.name))
    return t1 - t0, t2 - t1, max(peak_fds, open_fds()), len(topo.vms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 10, 50, 100])
    ap.add_argument("--vms-per-node", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/topology.py needs root", file=sys.stderr)
        return 2
    os.environ["NETSIM_STATE_DIR"] = tempfile.mkdtemp(prefix="netsim-bench-")
    print(f"{'nodes':>5} {'VMs':>5} {'build s':>8} {'down s':>8} {'ms/VM up':>9} {'ms/VM down':>10} "
          f"{'peak RSS MB':>11} {'open fds':>8}")
    for nodes in args.nodes:
        runs = [one_run(nodes, args.vms_per_node) for _ in range(args.runs)]
        up = statistics.median(r[0] for r in runs)
        down = statistics.median(r[1] for r in runs)
        vms = runs[0][3]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{nodes:>5} {vms:>5} {up:>8.3f} {down:>8.3f} {1000 * up / vms:>9.2f} {1000 * down / vms:>10.2f} "
              f"{rss:>11.1f} {max(r[2] for r in runs):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
