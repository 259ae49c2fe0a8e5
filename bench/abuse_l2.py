#!/usr/bin/env python3
"""Layer-2 attacks of a hostile VM on its neighbour, each tried N times; print a table.

Run as root: .venv/bin/python bench/abuse_l2.py [--attempts 100]

One datacenter (netsim/harness/l2attack.py's topology: web1 and db1 on node n1, web2 on
n2) is built and torn down. web1 attacks db1 from inside its namespace with scapy
(netsim/harness/l2agent.py): identity theft through the bridge's forwarding table (a
TCP exchange with the metadata server from db1's address while poisoning the FDB), ARP
spoofing of db1's link-local address and of 169.254.169.254 (plain, in an 802.1Q tag
with VLAN 0, VLAN 0 with priority bits, QinQ), and FDB poisoning (frames with db1's MAC,
then a look at the bridge and at what reaches web1 while db1 polls). A success is judged
from the kernel's tables and the server's answers (see l2attack). The goal is 0 successes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, ".."))

from netsim.harness import l2attack  # noqa: E402
from netsim.api import datacenter as dcapi  # noqa: E402
from netsim.model import parse  # noqa: E402

VARIANT_NAMES = {"plain": "ARP spoof plain", "vlan0": "ARP spoof 802.1Q VLAN 0",
                 "vlan0-priority": "ARP spoof VLAN 0 + priority bits", "qinq": "ARP spoof QinQ (802.1ad)"}


def _attacks(w: l2attack.World, agent: l2attack.Agent) -> list[tuple[str, Callable[[], bool]]]:
    out: list[tuple[str, Callable[[], bool]]] = [
        ("identity theft via FDB", lambda: l2attack.identity_theft_attempt(w, agent, "db1"))]
    for variant, title in VARIANT_NAMES.items():
        out.append((title, lambda v=variant: l2attack.arp_spoof_attempt(w, agent, "db1", v)))
    out.append(("FDB poisoning", lambda: l2attack.fdb_poison_attempt(w, agent, "db1")))
    return out


def _recover(dc, w: l2attack.World, timeout: float = 10.0) -> None:
    """After a successful attack: wait until db1 holds an address again and re-read them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not dc.link_local_addresses()["db1"]:
        time.sleep(0.2)
    w.link_local = dc.link_local_addresses()


def run(attempts: int = 100) -> list[dict]:
    """Build one datacenter, run each L2 attack ``attempts`` times, tear down; return rows
    ``{"attack": str, "attempts": int, "successes": int}``."""
    os.environ.setdefault("NETSIM_STATE_DIR", tempfile.mkdtemp(prefix="netsim-bench-"))
    topo = parse(l2attack.TOPOLOGY, "<abuse_l2 topology>")
    running = dcapi.up(replace(topo, name=f"al2{os.getpid() % 100000:05d}"))
    rows = []
    try:
        w = l2attack.World(running)
        with l2attack.Agent(running, "web1") as agent:
            for title, attempt in _attacks(w, agent):
                successes = 0
                for _ in range(attempts):
                    if attempt():
                        successes += 1
                        _recover(running, w)
                rows.append({"attack": title, "attempts": attempts, "successes": successes})
    finally:
        running.down()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attempts", type=int, default=100, help="tries of each attack (default 100)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/abuse_l2.py needs root (it builds namespaces)", file=sys.stderr)
        return 2
    if args.attempts < 1:
        print("--attempts must be at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows = run(args.attempts)
    print(f"{'attack':<36} {'attempts':>8} {'successes':>9}  goal")
    for row in rows:
        print(f"{row['attack']:<36} {row['attempts']:>8} {row['successes']:>9}  0")
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if any(r["successes"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
