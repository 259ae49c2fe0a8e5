"""The seed's two scenarios end to end, during real maintenance walks."""

import os
import time
from dataclasses import replace

import pytest

from netsim.tools import demo
from netsim.harness.syslog import start_collector
from netsim.model import load

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "is-vm-in-maint.sh")


@pytest.mark.root
def test_with_drain_agents_a_walk_under_load_fails_no_request_and_without_some_fail():
    with_agents = demo.run_walk(True, notice=2, downtime=3, rate=80, name=f"dw{os.getpid() % 1000}")
    assert with_agents.requests >= 80 * 10
    assert with_agents.failed == 0, (with_agents.errors, with_agents.failures, with_agents.windows)
    assert [w[0] for w in with_agents.windows] == ["web1", "web2", "web3"]  # one update domain at a time
    without = demo.run_walk(False, notice=2, downtime=3, rate=80, name=f"dn{os.getpid() % 1000}")
    assert without.failed > 0, "rebooting VMs with requests in flight must fail some of them"


@pytest.mark.root
def test_the_cron_script_logs_each_event_of_a_walk_exactly_once(datacenter_factory, tmp_path):
    state = tmp_path / "ids"
    loop = (f"while true; do SYSLOG_SERVER=198.19.255.30 MAINT_STATE_FILE={state}/$NETSIM_VM "
            f"sh {os.path.abspath(SCRIPT)}; sleep 0.3; done")
    topo = load()
    dc = datacenter_factory(replace(topo, vms=tuple(replace(v, services=(loop,)) for v in topo.vms)))
    collector = start_collector(dc)
    try:
        dc.request("walk_start", avset="web", notice=2, downtime=1)
        deadline = time.monotonic() + 60
        while not (dc.request("snapshot")["walks"][0]["state"] == "done"):
            assert time.monotonic() < deadline, "the walk did not end"
            time.sleep(0.2)
        time.sleep(1.5)  # several more runs of every VM's script after the walk
        lines = [ln for ln in collector.lines() if ln.app == "vm-maintenance"]
        per_vm = {vm: [ln for ln in lines if vm in ln.message] for vm in ("web1", "web2", "web3")}
        assert {vm: len(found) for vm, found in per_vm.items()} == {"web1": 1, "web2": 1, "web3": 1}, lines
    finally:
        collector.stop()


def test_table_and_picture_show_requests_failures_latency_and_each_vms_window(tmp_path):
    runs = [demo.WalkRun(True, requests=1200, failed=0, walk_seconds=13.0, per_second=[[0, 80, 0], [1, 79, 0]],
                         windows=[("web1", 4.0, 7.0)], latency_ms={"p50": 201.0, "p99": 212.4, "max": 240.0}),
            demo.WalkRun(False, requests=1300, failed=16, walk_seconds=15.0, per_second=[[0, 70, 10]],
                         windows=[("web2", 9.0, 12.0)], latency_ms={})]
    lines = demo.table(runs).splitlines()
    assert lines[0].split() == ["requests", "failed", "failed", "%", "p99", "ms", "max", "ms", "walk", "s"]
    assert lines[1].split() == ["with", "drain", "agents", "1200", "0", "0.00%", "212", "240", "13.0"]
    assert lines[2].split() == ["without", "drain", "agents", "1300", "16", "1.23%", "-", "-", "15.0"]
    path = tmp_path / "walk.svg"
    demo.svg(runs, str(path))
    picture = path.read_text()
    assert picture.startswith("<svg") and picture.rstrip().endswith("</svg>")
    assert "web1 down" in picture and "web2 down" in picture and "16 failed" in picture
    assert picture.count('fill="#d22"') == 1  # one second with failures, drawn red
