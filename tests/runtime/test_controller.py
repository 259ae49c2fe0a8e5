"""Maintenance that really happens to VMs: walks, one-off events, healing, durability."""

import json
import os
import signal
import time

import pytest

from netsim.kernel import procfs

pytestmark = pytest.mark.root


def topology(boots_dir):
    vms = "".join(f'[[vm]]\nname = "web{i}"\navailability_set = "web"\n'
                  f'services = ["echo boot >> {boots_dir}/$NETSIM_VM; exec sleep 600"]\n' for i in (1, 2, 3))
    return ('[[node]]\nname = "n1"\n[[node]]\nname = "n2"\n[[node]]\nname = "n3"\n'
            '[[availability_set]]\nname = "web"\nupdate_domains = 3\n' + vms)


@pytest.fixture
def boots(tmp_path):
    d = tmp_path / "boots"
    d.mkdir()
    return d


@pytest.fixture
def dc(datacenter_factory, boots):
    return datacenter_factory(topology(boots))


def boot_count(boots, vm):
    path = boots / vm
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def curl(host_exec, vm, path, *headers):
    argv = ["curl", "-s", "-m", "3"] + [x for h in headers for x in ("-H", h)]
    return host_exec(vm, *argv, f"http://169.254.169.254{path}").stdout


def test_a_walk_reboots_one_update_domain_at_a_time_in_order(dc, boots):
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 1 for i in (1, 2, 3)), 10, "first boots")
    dc.request("walk_start", avset="web", notice=0.5, downtime=0.5)
    started_order, overlap = [], 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        snap = dc.request("snapshot")
        started = {vm for e in snap["events"] if e["status"] == "Started" for vm in e["resources"]}
        overlap = max(overlap, len(started))
        for vm in sorted(started):
            if vm not in started_order:
                started_order.append(vm)
        if snap["walks"] and snap["walks"][0]["state"] == "done":
            break
        time.sleep(0.05)
    assert snap["walks"][0]["state"] == "done" and snap["walks"][0]["done_uds"] == [0, 1, 2]
    assert started_order == ["web1", "web2", "web3"] and overlap == 1
    # Each VM rebooted exactly once and its declared service came back.
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 2 for i in (1, 2, 3)), 10, "second boots")


def test_the_two_apis_show_an_event_in_their_own_windows(dc, host_exec):
    far = dc.request("event_add", vm="web1", type="Reboot", **{"in": 400})["event"]
    assert json.loads(curl(host_exec, "web1", "/metadata/v1/maintenance")) == {}
    se = json.loads(curl(host_exec, "web1", "/metadata/scheduledevents?api-version=2020-07-01", "Metadata: true"))
    assert [e["EventId"] for e in se["Events"]] == [far["event_id"]]
    near = dc.request("event_add", vm="web2", type="Reboot", **{"in": 200})["event"]
    assert json.loads(curl(host_exec, "web2", "/metadata/v1/maintenance"))["EventID"] == near["event_id"]
    assert json.loads(curl(host_exec, "web1", "/metadata/v1/maintenance")) == {}


def test_default_notices_are_azures_minimums(dc):
    now = time.time()
    for kind, notice in (("Freeze", 900), ("Redeploy", 600), ("Preempt", 30)):
        e = dc.request("event_add", vm="web3", type=kind)["event"]
        assert abs(e["not_before"] - now - notice) < 5, kind


def test_freeze_stops_the_vms_processes_for_its_duration(dc):
    proc = dc.popen("web1", ["sleep", "600"])
    dc.request("event_add", vm="web1", type="Freeze", duration=2, **{"in": 0.2})

    def state():
        return procfs.task_state(proc.pid)
    wait_until(lambda: state() == "T", 5, "the process to be stopped")
    wait_until(lambda: state() in ("S", "R"), 6, "the process to resume")
    assert proc.poll() is None
    wait_until(lambda: not dc.request("events")["events"], 5, "the event to disappear")
    proc.kill()
    proc.wait()


def test_reboot_ends_processes_and_brings_declared_services_back(dc, boots):
    wait_until(lambda: boot_count(boots, "web2") == 1, 10, "first boot")
    stray = dc.popen("web2", ["sleep", "600"])
    dc.request("event_add", vm="web2", type="Reboot", duration=1, **{"in": 0.2})
    wait_until(lambda: stray.poll() is not None, 5, "the VM's processes to end")
    wait_until(lambda: boot_count(boots, "web2") == 2, 10, "the service to start again")
    wait_until(lambda: dc.claims()["web2"]["state"] == "BOUND", 10, "the address to be claimed again")


def test_redeploy_moves_the_vm_which_keeps_its_identity(dc, host_exec):
    before = json.loads(curl(host_exec, "web1", "/metadata/v1/InstanceInfo"))
    dc.request("event_add", vm="web1", type="Redeploy", duration=0, **{"in": 0.2})
    snap = wait_until(lambda: (s := dc.request("snapshot"))["placement"]["web1"] != "n1" and not s["events"] and s,
                      15, "the redeploy to finish")
    assert snap["placement"]["web1"] in ("n2", "n3")
    answer = wait_until(lambda: curl(host_exec, "web1", "/metadata/v1/InstanceInfo"), 10, "metadata on the new node")
    assert json.loads(answer) == before


@pytest.mark.parametrize("kind", ["Preempt", "Terminate"])
def test_preempt_and_terminate_remove_the_vm(dc, kind):
    ns = dc.namespace("web3")
    dc.request("event_add", vm="web3", type=kind, **{"in": 0.2})
    wait_until(lambda: not os.path.exists(f"/run/netns/{ns}"), 10, "the VM to be removed")
    assert "web3" not in dc.request("snapshot")["placement"]


def test_service_healing_restores_a_failed_nodes_vms_elsewhere(dc, host_exec):
    dc.request("node_fail", node="n1")
    snap = wait_until(lambda: (s := dc.request("snapshot"))["placement"]["web1"] != "n1" and s, 15, "healing")
    assert "n1" in snap["planner_failed_nodes"] and snap["placement"]["web1"] in ("n2", "n3")
    answer = wait_until(lambda: curl(host_exec, "web1", "/metadata/v1/InstanceInfo"), 10, "metadata after healing")
    assert json.loads(answer)["ID"] == "web1"
    dc.request("node_recover", node="n1")


def test_sigkill_of_the_daemon_mid_walk_loses_and_repeats_nothing(dc, boots):
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 1 for i in (1, 2, 3)), 10, "first boots")
    dc.request("walk_start", avset="web", notice=0.5, downtime=1.5)
    wait_until(lambda: any(e["status"] == "Started" and e["resources"] == ["web2"]
                           for e in dc.request("events")["events"]), 20, "UD 1 to be in impact")
    dc.stop_daemon(signal.SIGKILL)
    time.sleep(0.5)
    dc.start_daemon()
    wait_until(lambda: (w := dc.request("snapshot")["walks"]) and w[0]["state"] == "done", 30, "the walk to end")
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 2 for i in (1, 2, 3)), 10, "every VM back")
    time.sleep(1)
    assert [boot_count(boots, f"web{i}") for i in (1, 2, 3)] == [2, 2, 2]
