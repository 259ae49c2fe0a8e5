"""GCE's scheduling made real by a datacenter's daemon (needs root): a live migration moves
the VM to another node keeping its identity, a termination of a VM without automatic
restart leaves it stopped until ``netsim vm start``, service healing and a planned walk on
a gcp datacenter. Every request starts inside a VM (curl through ``netsim exec``)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.server.gcp.test_gcp_datacenter import NETSIM, event_add, google, wait_for

pytestmark = pytest.mark.root

TOPOLOGY = """
[datacenter]
cloud = "gcp"
linklocal = "static"

[[node]]
name = "n1"

[[node]]
name = "n2"

[[availability_set]]
name = "web"
update_domains = 2

[[vm]]
name = "web1"
node = "n1"
availability_set = "web"

[[vm]]
name = "web2"
node = "n1"
availability_set = "web"
on_host_maintenance = "TERMINATE"
automatic_restart = false

[[vm]]
name = "solo"
node = "n2"
"""


@pytest.fixture
def gcp_dc(datacenter_factory):
    """A running gcp datacenter: web1 (MIGRATE) and web2 (TERMINATE, no restart) on n1, solo on n2."""
    return datacenter_factory(TOPOLOGY)


def placement(dc) -> dict[str, str]:
    return dc.request("snapshot")["placement"]


def log_has(dc, text: str) -> bool:
    with open(dc.state.file("daemon.log")) as f:
        return text in f.read()


def netsim(dc, *args: str) -> None:
    subprocess.run([NETSIM, *args, "--name", dc.name], check=True, capture_output=True, timeout=30)


def test_a_live_migration_moves_the_vm_and_keeps_its_identity(gcp_dc) -> None:
    who = {k: google(gcp_dc, "web1", f"instance/{k}")[2] for k in ("id", "name", "network-interfaces/0/ip")}
    etag = google(gcp_dc, "web1", "instance/maintenance-event")[1]["etag"]  # read: warned
    poll = gcp_dc.popen("web1", ["curl", "-s", "-m", "20", "-H", "Metadata-Flavor: Google",
                                 "http://metadata.google.internal/computeMetadata/v1/instance/maintenance-event"
                                 f"?wait_for_change=true&timeout_sec=15&last_etag={etag}"],
                        stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    event_add(gcp_dc, "web1", "MIGRATE_ON_HOST_MAINTENANCE", "--in", "2")
    out, _ = poll.communicate(timeout=30)
    assert out == "MIGRATE_ON_HOST_MAINTENANCE"
    # A poll parked on n1 during the notice ends at the thaw (its old node closed it while
    # the VM could hear): the client polls again on n2, not after its own 25 s.
    parked = gcp_dc.popen("web1", ["curl", "-s", "-m", "25", "-H", "Metadata-Flavor: Google",
                                   "http://metadata/computeMetadata/v1/instance/maintenance-event"
                                   "?wait_for_change=true&timeout_sec=20&last_etag="
                                   + google(gcp_dc, "web1", "instance/maintenance-event")[1]["etag"]],
                          stdout=subprocess.PIPE, text=True)
    assert wait_for(lambda: placement(gcp_dc)["web1"] == "n2")
    parked.communicate(timeout=30)
    assert parked.returncode in (52, 56), parked.returncode  # empty reply or reset: not the 25 s timeout (28)
    assert wait_for(lambda: log_has(gcp_dc, "web1 thawed"))
    assert log_has(gcp_dc, "web1 moved from node n1 to node n2") and log_has(gcp_dc, "web1 frozen")
    # Served by n2 now, as the same instance; a new long poll parks and times out there.
    assert {k: google(gcp_dc, "web1", f"instance/{k}")[2] for k in who} == who
    assert wait_for(lambda: google(gcp_dc, "web1", "instance/maintenance-event")[2] == "NONE")
    started = time.time()
    status, _, body = google(gcp_dc, "web1", "instance/maintenance-event?wait_for_change=true&timeout_sec=1")
    assert (status, body) == (200, "NONE") and time.time() - started >= 0.9
    assert placement(gcp_dc)["web2"] == "n1"  # its neighbour did not move


def test_a_termination_without_automatic_restart_leaves_the_vm_stopped(gcp_dc) -> None:
    assert google(gcp_dc, "web2", "instance/scheduling/automatic-restart")[2] == "FALSE"
    assert google(gcp_dc, "web2", "instance/maintenance-event")[2] == "NONE"  # read: warned
    event_add(gcp_dc, "web2", "TERMINATE_ON_HOST_MAINTENANCE", "--in", "1", "--duration", "1")
    assert google(gcp_dc, "web2", "instance/maintenance-event")[2] == "TERMINATE_ON_HOST_MAINTENANCE"
    assert wait_for(lambda: "web2" in gcp_dc.request("snapshot")["stopped_vms"])
    assert log_has(gcp_dc, "web2 powered off")
    time.sleep(2.0)  # well past its 1 s impact: a VM with automatic restart would be on again
    assert not log_has(gcp_dc, "web2 powered on") and "web2" in gcp_dc.request("snapshot")["stopped_vms"]
    out = gcp_dc.run("web2", ["curl", "-s", "-m", "2", "http://169.254.169.254/"], capture_output=True, timeout=30)
    assert out.returncode != 0  # off: its link is down
    netsim(gcp_dc, "vm", "start", "web2")
    assert wait_for(lambda: google(gcp_dc, "web2", "instance/name")[2] == "web2")
    assert gcp_dc.request("snapshot")["stopped_vms"] == []


def test_service_healing_moves_the_vms_of_a_failed_node(gcp_dc) -> None:
    vm_id = google(gcp_dc, "solo", "instance/id")[2]
    netsim(gcp_dc, "node", "fail", "n2")
    try:
        assert wait_for(lambda: placement(gcp_dc)["solo"] == "n1", timeout=30)
        assert wait_for(lambda: google(gcp_dc, "solo", "instance/name")[2] == "solo", timeout=30)
        assert google(gcp_dc, "solo", "instance/id")[2] == vm_id  # the same instance, served by n1
        events = gcp_dc.request("snapshot")["events"]
        assert all(e["event_type"] in ("TERMINATE_ON_HOST_MAINTENANCE", "MIGRATE_ON_HOST_MAINTENANCE", "preemption")
                   for e in events), events  # GCE's names for whatever the healing filed
    finally:
        netsim(gcp_dc, "node", "recover", "n2")


def test_a_planned_walk_terminates_each_update_domain_by_its_vms_scheduling(gcp_dc) -> None:
    for vm in ("web1", "web2"):
        assert google(gcp_dc, vm, "instance/maintenance-event")[2] == "NONE"  # read: warned
    netsim(gcp_dc, "maintenance", "start", "web", "--notice", "1", "--downtime", "1")
    doc = json.loads(google(gcp_dc, "web1", "instance/upcoming-maintenance")[2])
    assert doc["type"] == "SCHEDULED"
    assert wait_for(lambda: gcp_dc.request("snapshot")["walks"][0]["state"] == "done", timeout=40)
    assert log_has(gcp_dc, "web1 powered off") and log_has(gcp_dc, "web1 powered on")  # restarted
    assert log_has(gcp_dc, "web2 powered off") and not log_has(gcp_dc, "web2 powered on")  # no restart
    assert gcp_dc.request("snapshot")["stopped_vms"] == ["web2"]
    assert google(gcp_dc, "web1", "instance/maintenance-event")[2] == "NONE"
