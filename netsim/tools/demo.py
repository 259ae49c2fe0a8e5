"""``netsim demo``: the seed's scenario end to end, with and without drain agents.

A datacenter (the default topology: availability set ``web`` of three VMs in update
domains 0, 1 and 2 on two nodes) runs a web app in every VM behind HAProxy in ``lb``; a
load generator in ``client`` sends HTTP through the virtual IP. A planned maintenance
walk reboots the update domains one at a time. With drain agents, each VM drains itself
from HAProxy when its event is scheduled, approves it once its connections are done and
sets itself ready after boot; without them the VMs just reboot. The demo shows a live
timeline, prints the comparison, saves the timeline as an SVG picture, and tears down.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

from netsim.api import datacenter as dcapi
from netsim.experiments.svg import outcome_bars
from netsim.harness.haproxy import start_load_balancer
from netsim.harness.loadgen import DEFAULT_TIMEOUT, add_source_addresses
from netsim.model import load
from netsim.model.topology import Datacenter

SOURCES = [f"198.19.255.{200 + i}" for i in range(8)]  # client addresses: stickiness spreads them
AGENT = "-m netsim.invm.drain_agent --lb 198.19.255.10:9999 --backend web"
AGENTS = {"gcp": "-m netsim.invm.gce_drain_agent --lb 198.19.255.10:9999 --backend web",
          "aws": '-m netsim.invm.aws_drain_agent --lb 198.19.255.10:9999 --backend web --server "$NETSIM_VM"'}
"""The drain agent of each flavor that has its own (the others run :data:`AGENT`, Azure's)."""


@dataclass
class WalkRun:
    """What one walk under load produced."""

    agents: bool
    requests: int = 0
    failed: int = 0
    walk_seconds: float = 0.0
    per_second: list = field(default_factory=list)      # [second, ok, failed]
    windows: list = field(default_factory=list)         # (vm, start second, end second) of each impact
    errors: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)        # the load generator's first failed requests
    latency_ms: dict = field(default_factory=dict)      # p50, p99, max of the answered requests


def scenario_topology(agents: bool, base: Datacenter | None = None) -> Datacenter:
    """The topology with the web app (and the drain agent) declared as every VM's services."""
    topo = base or load()
    agent = AGENTS.get(topo.cloud, AGENT)
    # The web app learns its name from Azure's 2015 API; elsewhere from the service's environment.
    webapp = f"{sys.executable} -m netsim.invm.webapp" + (' --name "$NETSIM_VM"' if topo.cloud in AGENTS else "")
    services = (webapp,) + ((f"{sys.executable} {agent}",) if agents else ())
    return replace(topo, vms=tuple(replace(v, services=services) for v in topo.vms), timers="fast")


def _log(dc: dcapi.RunningDatacenter, vm: str) -> str:
    path = dc.state.file(os.path.join("services", f"{vm}.log"))
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def run_walk(agents: bool, *, notice: float, downtime: float, rate: float, name: str,
             show=None, base: Datacenter | None = None, timeout: float = 240.0,
             request_seconds: float = 0.2, request_timeout: float = DEFAULT_TIMEOUT) -> WalkRun:
    """Build, load, walk, measure, tear down. ``show(line)`` receives the live timeline.

    A request fails when it gets no complete answer within ``request_timeout`` seconds,
    or an error."""
    run = WalkRun(agents)
    dc = dcapi.up(replace(scenario_topology(agents, base), name=name))
    try:
        lb = start_load_balancer(dc)
        lb.wait_up(timeout=20)
        add_source_addresses(dc, SOURCES)
        vms = [v.name for v in dc.topology.vms]
        if agents:
            deadline = time.monotonic() + 20
            while not all("set ready" in _log(dc, vm) for vm in vms):
                if time.monotonic() > deadline:
                    raise TimeoutError("the drain agents did not start")
                time.sleep(0.1)
        work = tempfile.mkdtemp(prefix="demo-", dir=dc.state.path)
        progress, out = os.path.join(work, "progress.json"), os.path.join(work, "load.json")
        # The load outlasts the slowest walk; the harness stops it when the walk is over.
        budget = 3 * (notice + downtime) + 30
        # Each request takes a little while, as real ones do: a VM that reboots under
        # load has requests in flight, and only a drained VM has none.
        url = f"http://198.19.255.100/?delay={request_seconds:g}"
        gen = dc.popen("client", [sys.executable, "-m", "netsim.harness.loadgen", "--url", url,
                                  "--rate", str(rate), "--duration", str(budget), "--timeout", f"{request_timeout:g}",
                                  "--source", ",".join(SOURCES), "--progress", progress, "--out", out],
                       stdout=open(os.path.join(work, "loadgen.log"), "wb"), stderr=open(os.devnull, "wb"))
        time.sleep(2.0)
        t0 = time.monotonic()
        dc.request("walk_start", avset="web", notice=notice, downtime=downtime)
        impact: dict[str, float] = {}
        while time.monotonic() - t0 < timeout:
            snap = dc.request("snapshot")
            now = time.monotonic() - t0 + 2.0  # seconds since the load began
            started = {vm for e in snap["events"] if e["status"] == "Started" for vm in e["resources"]}
            for vm in started:
                impact.setdefault(vm, now)
            for vm in list(impact):
                if vm not in started:
                    run.windows.append((vm, impact.pop(vm), now))
            walk = snap["walks"][0] if snap["walks"] else {}
            if show:
                show(_frame(dc, snap, lb, progress, now, walk, agents))
            if walk.get("state") == "done":
                break
            time.sleep(1.0)
        run.walk_seconds = time.monotonic() - t0
        gen.terminate()  # the load generator stops and writes its summary
        gen.wait(15)
        summary = json.load(open(out))
        run.requests, run.failed, run.errors = summary["sent"], summary["failed"], summary["errors"]
        run.failures, run.latency_ms = summary["failures"], summary["latency_ms"]
        run.per_second = [[s["second"], s["ok"], s["failed"]] for s in summary["per_second"]]
        lb.stop()
    finally:
        dc.down()
    return run


def _frame(dc, snap: dict, lb, progress: str, now: float, walk: dict, agents: bool) -> str:
    try:
        last = json.load(open(progress))["per_second"][-2]
        rate = f"{last[1]:>4} ok {last[2]:>3} failed /s"
    except (OSError, ValueError, IndexError):
        rate = "   (starting)    "
    try:
        states = {name: s.status.split()[0] for name, s in lb.servers().items()}
    except Exception:
        states = {}
    status = {vm: "ok" for vm in snap["placement"]}
    for e in snap["events"]:
        for vm in e["resources"]:
            status[vm] = "DOWN" if e["status"] == "Started" else "notice"
    vms = " ".join(f"{vm}:{status.get(vm, '?'):<6}lb={states.get(vm, '?'):<5}" for vm in sorted(status))
    ud = walk.get("current_ud")
    # Issue 13: the faults in force on the timeline (an experiment may add them to the demo's walk).
    faults = [f"{f['id']}:{f['target']}" for f in snap.get("faults", []) if f["state"] == "active"]
    return (f"[{'agents' if agents else 'no agents':>9}] t={now:5.1f}s  UD {ud if ud is not None else '-'} "
            f"{walk.get('state', ''):<7} | {vms} | client {rate}" + (f" | faults {' '.join(faults)}" if faults else ""))


def svg(runs: list[WalkRun], path: str) -> None:
    """Save the runs' per-second client outcomes, with each VM's impact shaded, as SVG."""
    width, panel, left = 900, 170, 50
    seconds = max((len(r.per_second) for r in runs), default=1)
    top = max((ok + bad for r in runs for _, ok, bad in r.per_second), default=1) or 1
    x = lambda s: left + (width - left - 20) * s / max(seconds, 1)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(runs) * (panel + 40) + 40}" '
             'font-family="sans-serif" font-size="12">', '<rect width="100%" height="100%" fill="white"/>',
             '<text x="10" y="20" font-size="15">netsim demo: client requests per second during a maintenance '
             'walk (green ok, red failed; grey: which VM is down)</text>']
    for i, run in enumerate(runs):
        y0 = 40 + i * (panel + 40)
        base = y0 + panel
        label = (f"{'with' if run.agents else 'without'} drain agents: {run.requests} requests, "
                 f"{run.failed} failed, walk {run.walk_seconds:.0f} s")
        parts.append(f'<text x="{left}" y="{y0 + 14}">{label}</text>')
        for vm, a, b in run.windows:
            parts.append(f'<rect x="{x(a):.1f}" y="{y0 + 20}" width="{max(1.0, x(b) - x(a) - 1):.1f}" '
                         f'height="16" fill="#999"/><text x="{x(a) + 3:.1f}" y="{y0 + 32}" fill="white" '
                         f'font-size="11">{vm} down</text>')
        bar = max(1.0, (width - left - 20) / max(seconds, 1) - 1)
        parts += outcome_bars(x, base, panel - 45, run.per_second, top, bar)
        parts.append(f'<line x1="{left}" y1="{base}" x2="{width - 20}" y2="{base}" stroke="black"/>')
        parts.append(f'<text x="{left - 5}" y="{base + 14}" text-anchor="end">0 s</text>'
                     f'<text x="{width - 20}" y="{base + 14}" text-anchor="end">{seconds} s</text>'
                     f'<text x="{left - 5}" y="{base - panel + 49}" text-anchor="end">{top}/s</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def table(runs: list[WalkRun]) -> str:
    """The comparison the demo prints: requests, failures, and how long the answered ones took."""
    lines = [f"{'':<22} {'requests':>9} {'failed':>7} {'failed %':>9} {'p99 ms':>7} {'max ms':>7} {'walk s':>7}"]
    for r in runs:
        pct = 100.0 * r.failed / r.requests if r.requests else 0.0
        p99, top = (r.latency_ms.get(k) for k in ("p99", "max"))
        lines.append(f"{'with drain agents' if r.agents else 'without drain agents':<22} {r.requests:>9} "
                     f"{r.failed:>7} {pct:>8.2f}% {_ms(p99):>7} {_ms(top):>7} {r.walk_seconds:>7.1f}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
