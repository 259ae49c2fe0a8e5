"""Draining across real namespaces: HAProxy in ``lb``, web apps and drain agents in the
VMs (declared services, so a reboot restarts them), the load generator in ``client``.

A Reboot event for web1: its drain agent drains web1 in HAProxy, waits for its sessions
to end and approves the event (Started); the VM really reboots; the load generator
sees no failure throughout. After the boot the agent sets web1 ready again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field, replace

import pytest

from netsim.harness.haproxy import LoadBalancer, start_load_balancer
from netsim.harness.loadgen import add_source_addresses
from netsim.model import load
from netsim.model.addressing import routable_of

SOURCES = [f"198.19.255.{200 + i}" for i in range(8)]  # eight "clients" in the client host
VMS = ("web1", "web2", "web3")
AGENT = "netsim.invm.drain_agent --lb 198.19.255.10:9999 --backend web"
RATE, DURATION = 40, 12


def topology_with_services():
    """The default topology, each VM running the web app and the drain agent."""
    topo = load()
    services = (f"{sys.executable} -m netsim.invm.webapp", f"{sys.executable} -m {AGENT}")
    return replace(topo, vms=tuple(replace(v, services=services) for v in topo.vms))


def loadgen_args(*extra: str) -> list[str]:
    return ["--source", ",".join(SOURCES), *extra]


def service_log(dc, vm: str) -> str:
    path = dc.state.file(os.path.join("services", f"{vm}.log"))
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def event_status(dc, event_id: str) -> str | None:
    return next((e["status"] for e in dc.request("events")["events"] if e["event_id"] == event_id), None)


def start_scenario(datacenter_factory, stopper) -> tuple:
    """The datacenter with web apps and agents, HAProxy up, every agent ready."""
    dc = datacenter_factory(topology_with_services())
    lb = start_load_balancer(dc)
    stopper(lb)
    lb.wait_up(timeout=15)
    add_source_addresses(dc, SOURCES)
    deadline = time.monotonic() + 10  # agents retry until HAProxy is up
    while not all("set ready" in service_log(dc, vm) for vm in VMS):
        assert time.monotonic() < deadline, {vm: service_log(dc, vm) for vm in VMS}
        time.sleep(0.1)
    return dc, lb


@dataclass
class Observed:
    """What the harness saw of web1 and its event while the load ran."""

    event_id: str
    transitions: list = field(default_factory=list)   # (HAProxy status of web1, event status)
    drained_while_scheduled: bool = False
    started: bool = False
    back: bool = False                                 # event gone and web1 UP again
    load: dict = field(default_factory=dict)


def drain_under_load(dc, lb: LoadBalancer, spawn, tmp_path, *, wait_back: float) -> Observed:
    """Run the load, file a Reboot for web1 and watch until it started (and, for up to
    ``wait_back`` seconds, until web1 is back in rotation); returns what was seen."""
    out = tmp_path / "loadgen.json"
    # Each request lasts 0.2 s, so web1 has sessions in flight when its drain begins.
    gen = spawn(dc, "client", "netsim.harness.loadgen", *loadgen_args(
        "--url", "http://198.19.255.100/?delay=0.2", "--rate", str(RATE), "--duration", str(DURATION),
        "--out", str(out)), log="loadgen.log")
    time.sleep(1.5)
    event = dc.request("event_add", vm="web1", type="Reboot", duration=2, **{"in": 120})["event"]
    seen = Observed(event["event_id"])
    deadline = time.monotonic() + 10
    while gen.proc.poll() is None or (seen.started and not seen.back and time.monotonic() < deadline):
        web1, status = lb.servers()["web1"], event_status(dc, seen.event_id)
        if not seen.transitions or seen.transitions[-1] != (web1.status, status):
            seen.transitions.append((web1.status, status))
        seen.drained_while_scheduled |= web1.status.startswith("DRAIN") and status == "Scheduled"
        if status == "Started" and not seen.started:
            seen.started, deadline = True, time.monotonic() + wait_back
        seen.back |= seen.started and status is None and web1.status == "UP"
        time.sleep(0.05)
    assert gen.wait(30) == 0, gen.output()
    seen.load = json.loads(out.read_text())
    return seen


@pytest.mark.root
def test_lb_balances_with_source_stickiness(datacenter_factory, stopper):
    dc, lb = start_scenario(datacenter_factory, stopper)
    warm = dc.run("client", [sys.executable, "-m", "netsim.harness.loadgen",
                             *loadgen_args("--rate", "40", "--duration", "2")], timeout=20)
    assert warm.returncode == 0, warm.stderr
    summary = json.loads(warm.stdout)
    assert summary["failed"] == 0 and summary["ok"] == 80, summary
    # Each source address always lands on the same VM; the sources spread over several.
    assert len(summary["by_source"]) == len(SOURCES)
    assert all(len(seen) == 1 for seen in summary["by_source"].values()), summary["by_source"]
    assert len(summary["backends"]) >= 2, summary["backends"]
    # And HAProxy counted them: every request was one session on one server.
    assert sum(s.total for s in lb.servers().values()) >= 80


def listen_overflows(dc, vm: str) -> int:
    """The kernel's count of connections ``vm`` dropped because its listen queue was full."""
    out = dc.run(vm, ["nstat", "-az", "TcpExtListenOverflows"]).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.startswith("TcpExtListenOverflows"))


@pytest.mark.root
def test_a_burst_of_new_connections_to_one_web_app_drops_no_syn(datacenter_factory, stopper):
    """A drained server's clients all arrive at once on the others: the web app's listen
    queue must hold such a burst (socketserver's default of 5 made the kernel drop SYNs,
    and HAProxy waited a second per dropped one)."""
    dc, _ = start_scenario(datacenter_factory, stopper)
    web1 = routable_of(dc.topology, "web1")
    before = listen_overflows(dc, "web1")
    burst = dc.run("client", [sys.executable, "-m", "netsim.harness.loadgen", "--url", f"http://{web1}:8080/",
                              "--rate", "20000", "--count", "300", "--duration", "1"], timeout=30)
    assert burst.returncode == 0, burst.stderr
    summary = json.loads(burst.stdout)
    assert summary["ok"] == 300, summary["errors"]
    assert listen_overflows(dc, "web1") == before


@pytest.mark.root
def test_drain_agent_drains_approves_and_clients_see_no_failure(datacenter_factory, stopper, spawn, tmp_path):
    dc, lb = start_scenario(datacenter_factory, stopper)
    seen = drain_under_load(dc, lb, spawn, tmp_path, wait_back=0)
    assert seen.drained_while_scheduled and seen.started, seen.transitions

    result = seen.load
    assert result["failed"] == 0, (result["errors"], seen.transitions)
    assert result["ok"] == result["sent"] == RATE * DURATION, result
    assert all(second["failed"] == 0 for second in result["per_second"])
    assert result["backends"].get("web1", 0) > 0  # web1 served before its drain

    log = service_log(dc, "web1")
    for step in (f"{seen.event_id} scheduled", "set drain", "drained (0 sessions)", f"approved {seen.event_id}"):
        assert step in log, log
    assert log.index("set drain") < log.index("drained (0 sessions)") < log.index(f"approved {seen.event_id}")


@pytest.mark.root
def test_rebooted_vm_is_set_ready_again_by_its_agent(datacenter_factory, stopper, spawn, tmp_path):
    dc, lb = start_scenario(datacenter_factory, stopper)
    seen = drain_under_load(dc, lb, spawn, tmp_path, wait_back=15)
    assert seen.load["failed"] == 0, (seen.load["errors"], seen.transitions)
    log = service_log(dc, "web1")
    assert seen.back, f"web1 never came back: {seen.transitions}\n{log}"
    assert log.count("setting server web1 ready") == 2, log  # first boot, and after the reboot
