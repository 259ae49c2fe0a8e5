#!/usr/bin/env python3
"""A hostile VM against the datacenter: every attack of the security suite, as a table.

Run as root: .venv/bin/python bench/abuse.py [--attempts 100] [--only l2|flood]

Two parts, each building its own datacenter and tearing it down:

- ``bench/abuse_l2.py``: layer-2 attacks from a VM (identity theft through the bridge's
  forwarding table, ARP spoofing plain, in an 802.1Q tag with VLAN 0, with priority bits
  and in QinQ, FDB poisoning), each tried ``--attempts`` times; the goal is 0 successes.
- ``bench/abuse_flood.py``: floods of the metadata service from one VM (pipelining from
  50 connections, 1,000 connections that never read, 15 KB headers pipelined) while honest
  VMs on the same node and on another node poll 10 times a second; the goals are 0 honest
  errors, honest p99 <= 50 ms, daemon RSS <= 150 MB and daemon.log growth <= 1 MB a minute.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import abuse_flood  # noqa: E402
import abuse_l2  # noqa: E402

FLOOD_GOALS = {"p99_ms": 50.0, "rss_mb": 150.0, "log_kb_per_min": 1024.0}


def print_l2(rows: list[dict]) -> None:
    """The layer-2 table: attack, attempts, successes (goal 0)."""
    print(f"{'attack':<40} {'attempts':>8} {'successes':>9}  goal")
    for row in rows:
        print(f"{row['attack']:<40} {row['attempts']:>8} {row['successes']:>9}  0")


def print_flood(rows: list[dict]) -> None:
    """The flood table: honest pollers' errors and p99 on both nodes, daemon RSS, log growth."""
    print(f"{'flood':<34} {'same err':>8} {'same p99':>9} {'other err':>9} {'other p99':>9} "
          f"{'RSS MB':>7} {'log KB/min':>10}")
    for row in rows:
        print(f"{row['flood']:<34} {row['honest_same_node_errors']:>8} {row['honest_same_node_p99_ms']:>9.1f} "
              f"{row['honest_other_node_errors']:>9} {row['honest_other_node_p99_ms']:>9.1f} "
              f"{row['daemon_rss_mb']:>7.1f} {row['log_growth_kb_per_min']:>10.1f}")
    g = FLOOD_GOALS
    print(f"{'goal':<34} {0:>8} {g['p99_ms']:>9.1f} {0:>9} {g['p99_ms']:>9.1f} {g['rss_mb']:>7.1f} "
          f"{g['log_kb_per_min']:>10.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attempts", type=int, default=100, help="tries of each layer-2 attack (default 100)")
    ap.add_argument("--only", choices=("l2", "flood"), help="run one part only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/abuse.py needs root (it builds namespaces)", file=sys.stderr)
        return 2
    if args.attempts < 1:
        print("--attempts must be at least 1", file=sys.stderr)
        return 2
    failed = False
    if args.only in (None, "l2"):
        rows = abuse_l2.run(attempts=args.attempts)
        print_l2(rows)
        failed |= any(r["successes"] for r in rows)
        print()
    if args.only in (None, "flood"):
        rows = abuse_flood.run()
        print_flood(rows)
        g = FLOOD_GOALS
        failed |= any(r["honest_same_node_errors"] or r["honest_other_node_errors"]
                      or r["honest_same_node_p99_ms"] > g["p99_ms"] or r["honest_other_node_p99_ms"] > g["p99_ms"]
                      or r["daemon_rss_mb"] > g["rss_mb"] or r["log_growth_kb_per_min"] > g["log_kb_per_min"]
                      for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
