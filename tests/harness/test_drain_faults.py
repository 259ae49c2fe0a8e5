"""Issue 13, item 6: the drain agent keeps 0 failed requests through a maintenance walk
while the metadata service answers 20 % of its requests with 500 (a fault of every VM,
probability 0.2): HAProxy in ``lb``, web apps and drain agents in the VMs, the load
generator in ``client``, across real namespaces.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.harness.test_drain_walk import RATE, VMS, loadgen_args, service_log, start_scenario

WALK_S = 40  # the load lasts this long: three update domains of drain, approval, reboot


@pytest.mark.root
def test_drain_agents_lose_no_request_through_a_walk_while_imds_answers_20_percent_500(
        datacenter_factory, stopper, spawn, tmp_path):
    dc, lb = start_scenario(datacenter_factory, stopper)
    fault = dc.add_fault("all", http=500, probability=0.2, path="/metadata/")
    out = tmp_path / "loadgen.json"
    gen = spawn(dc, "client", "netsim.harness.loadgen", *loadgen_args(
        "--url", "http://198.19.255.100/?delay=0.2", "--rate", str(RATE), "--duration", str(WALK_S),
        "--out", str(out)), log="loadgen.log")
    time.sleep(1.5)
    # A notice long enough for an approval to get through the 500s (the agent retries each second).
    walk = dc.request("walk_start", avset="web", notice=15, downtime=2)["walk"]
    deadline = time.monotonic() + WALK_S + 30
    while True:
        state = next(w for w in dc.request("snapshot")["walks"] if w["walk_id"] == walk["walk_id"])
        if state["state"] == "done":  # netsim.maintenance.tables.WalkState.DONE
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert gen.wait(WALK_S + 30) == 0, gen.output()
    result = json.loads(out.read_text())
    logs = {vm: service_log(dc, vm) for vm in VMS}
    # The fault really hit the agents: some of their polls were answered 500.
    assert any("500" in log for log in logs.values()), logs
    assert result["failed"] == 0, (result["errors"], logs)
    assert result["ok"] == result["sent"] == RATE * WALK_S, result
    for vm in VMS:  # every VM was drained and approved its event despite the 500s
        assert "set drain" in logs[vm] and "approved" in logs[vm], logs[vm]
    assert [f["id"] for f in dc.faults()] == [fault["id"]]
