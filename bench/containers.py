#!/usr/bin/env python3
"""Build N nodes x M VMs with and without one container per VM; print both build times and
their ratio (issue 11's figure: 1,000 VMs with one container each built in <= 2x the time).

Run as root, under the shared bench lock:
    flock /tmp/netsim-bench.lock .venv/bin/python bench/containers.py [--nodes 100] [--vms-per-node 10]
Each figure is the median of --runs runs, the two kinds alternating so that a slow moment of
the machine hits both. Kernel objects alone (static link-local addresses, no daemon), as in
bench/topology.py; teardown includes waiting until the kernel destroyed every namespace.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

from topology import one_run  # noqa: E402  (bench/topology.py)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--vms-per-node", type=int, default=10)
    ap.add_argument("--containers", type=int, default=1, help="containers per VM (default 1)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/containers.py needs root", file=sys.stderr)
        return 2
    os.environ["NETSIM_STATE_DIR"] = tempfile.mkdtemp(prefix="netsim-bench-")
    plain, boxed = [], []
    for _ in range(args.runs):
        plain.append(one_run(args.nodes, args.vms_per_node))
        boxed.append(one_run(args.nodes, args.vms_per_node, args.containers))
    vms = plain[0][3]
    up0, up1 = statistics.median(r[0] for r in plain), statistics.median(r[0] for r in boxed)
    down0, down1 = statistics.median(r[1] for r in plain), statistics.median(r[1] for r in boxed)
    print(f"{'VMs':>5} {'containers':>10} {'build s':>8} {'down s':>8} {'ms/VM up':>9}")
    print(f"{vms:>5} {0:>10} {up0:>8.3f} {down0:>8.3f} {1000 * up0 / vms:>9.2f}")
    print(f"{vms:>5} {vms * args.containers:>10} {up1:>8.3f} {down1:>8.3f} {1000 * up1 / vms:>9.2f}")
    print(f"build ratio with/without containers: {up1 / up0:.2f} (target <= 2.00); "
          f"teardown ratio {down1 / down0:.2f}; median of {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
