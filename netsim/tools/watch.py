"""``netsim watch``: a live timeline of nodes, VMs, events and walks."""

from __future__ import annotations

import sys
import time

from netsim.api.datacenter import RunningDatacenter
from netsim.runtime.faultspec import OPTIONS


def render(dc: RunningDatacenter, snap: dict) -> str:
    """One frame: each node with its VMs and their state, then events and walks."""
    t = time.strftime("%H:%M:%S", time.localtime(snap["now"]))
    affected = {}
    for e in snap["events"]:
        for vm in e["resources"]:
            affected[vm] = f"{e['event_type']} {e['status']}"
    lines = [f"{t}  datacenter {dc.name}"]
    for node in dc.topology.nodes:
        state = "FAILED" if node.name in snap["failed_nodes"] else "ok"
        vms = [vm for vm, n in sorted(snap["placement"].items()) if n == node.name]
        cells = []
        for vm in vms:
            claim = snap["claims"].get(vm, {})
            cells.append(f"{vm}[{affected.get(vm, claim.get('address') or 'up')}]")
        lines.append(f"  node {node.name:<8} {state:<7} " + " ".join(cells))
    for w in snap["walks"]:
        lines.append(f"  walk {w['avset']}: {w['state']}, UD {w['current_ud']} now, done {w['done_uds']}, "
                     f"pending {w['pending_uds']}")
    for e in snap["events"]:
        left = e["not_before"] - snap["now"]
        when = f"in {left:.0f} s" if e["status"] == "Scheduled" else "now"
        lines.append(f"  event {e['event_id'][:8]} {e['event_type']:<9} {e['status']:<9} "
                     f"{','.join(e['resources'])} {when}")
    for f in snap.get("faults", []):  # issue 13
        lines.append("  " + fault_cell(f, snap["now"]))
    return "\n".join(lines)


def fault_cell(f: dict, now: float) -> str:
    """One fault in a frame: id, state, kind, target, options and the time to its next change."""
    opts = " ".join(k if v is True else f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                    for k, v in f.items() if k in OPTIONS)
    if f["state"] == "pending":
        when = f"starts in {f['starts_at'] - now:.0f} s"
    elif f["state"] == "active":
        when = "until cleared" if f["ends_at"] is None else f"ends in {f['ends_at'] - now:.0f} s"
    else:
        when = "ended"
    return f"fault {f['id']} {f['state']:<7} {f['kind']:<4} {f['target']} {opts} {when}"


def watch(dc: RunningDatacenter, interval: float = 1.0, count: int = 0) -> None:
    """Print a frame every ``interval`` seconds (``count`` frames, or until Ctrl-C)."""
    shown = 0
    tty = sys.stdout.isatty()
    while count == 0 or shown < count:
        frame = render(dc, dc.request("snapshot"))
        print(("\x1b[H\x1b[2J" if tty else "") + frame + ("" if tty else "\n"), flush=True)
        shown += 1
        if count == 0 or shown < count:
            time.sleep(interval)
