"""Azure Spot eviction across real namespaces (needs root): each VM sees its Preempt in
Scheduled Events and approves it from inside (no waiting out a notice); then its eviction
policy decides: Delete removes the VM, Deallocate powers it off (no metadata server answers
it, ``netsim status`` shows it stopped) until ``netsim vm start`` boots it with its identity."""

from __future__ import annotations

import json
import os

import pytest

from tests.runtime.test_controller import boot_count, boots  # noqa: F401 (boots: a fixture)
from tests.server.aws.support import curl, link_up, netsim, status, wait_until

pytestmark = pytest.mark.root

COMPUTE = "/metadata/instance/compute?api-version=2021-02-01"
EVENTS = "/metadata/scheduledevents?api-version=2020-07-01"


def topology(boots) -> str:
    service = f'services = ["echo boot >> {boots}/$NETSIM_VM; exec sleep 600"]\n'
    return ('[[node]]\nname = "n1"\n'
            '[[vm]]\nname = "dealloc1"\npriority = "Spot"\n' + service +  # Deallocate: Azure's default
            '[[vm]]\nname = "delete1"\npriority = "Spot"\neviction_policy = "Delete"\n' + service)


@pytest.fixture
def dc(datacenter_factory, boots):
    return datacenter_factory(topology(boots))


def azure(dc, vm: str, path: str, *args: str) -> dict:
    """``path``'s JSON as ``vm`` gets it with ``Metadata: true`` ({} when nothing came)."""
    return json.loads(curl(dc, vm, path, "-H", "Metadata: true", *args) or "{}")


def preempt_seen_and_approved(dc, vm: str) -> dict:
    """File a Preempt on ``vm`` with a long notice; return it as the VM sees it, after the
    VM approved it (POST StartRequests), which starts it at once."""
    event_id = dc.request("event_add", vm=vm, type="Preempt", **{"in": 120})["event"]["event_id"]
    (seen,) = azure(dc, vm, EVENTS)["Events"]
    assert (seen["EventId"], seen["EventType"], seen["EventStatus"]) == (event_id, "Preempt", "Scheduled")
    assert seen["Resources"] == [vm] and seen["NotBefore"]
    body = json.dumps({"StartRequests": [{"EventId": event_id}]})
    assert status(dc, vm, EVENTS, "-H", "Metadata: true", "-X", "POST", "-d", body) == "200"
    return seen


def status_line(dc, vm: str) -> list[str]:
    """The words of ``vm``'s line in ``netsim status``."""
    return next(line.split() for line in netsim(dc, "status").splitlines() if line.split()[:2] == ["vm", vm])


def test_deallocate_stops_the_vm_until_vm_start_boots_it_with_its_identity(dc, boots) -> None:
    wait_until(lambda: boot_count(boots, "dealloc1") == 1, 10, "the first boot")
    before = azure(dc, "dealloc1", COMPUTE)
    assert (before["name"], before["priority"], before["evictionPolicy"]) == ("dealloc1", "Spot", "Deallocate")
    preempt_seen_and_approved(dc, "dealloc1")
    wait_until(lambda: dc.request("snapshot")["stopped_vms"] == ["dealloc1"], 15, "dealloc1 to be deallocated")
    # Off, not deleted: its namespace and place stay, its link is down, nothing answers it.
    assert os.path.exists(f"/run/netns/{dc.namespace('dealloc1')}") and not link_up(dc, "dealloc1")
    assert dc.request("snapshot")["placement"]["dealloc1"] == "n1"
    assert status(dc, "dealloc1", COMPUTE, "-H", "Metadata: true") == "000"
    assert status_line(dc, "dealloc1")[2] == "stopped" and status_line(dc, "delete1")[2] == "up"
    assert dc.request("events")["events"] == [] and boot_count(boots, "dealloc1") == 1
    netsim(dc, "vm", "start", "dealloc1")
    wait_until(lambda: boot_count(boots, "dealloc1") == 2, 15, "dealloc1 to boot again")
    after = wait_until(lambda: azure(dc, "dealloc1", COMPUTE), 15, "the metadata server to answer dealloc1")
    assert after["vmId"] == before["vmId"] and after == before  # the same VM, the same document
    assert dc.request("snapshot")["stopped_vms"] == [] and status_line(dc, "dealloc1")[2] == "up"


def test_delete_removes_the_vm_and_leaves_the_others_running(dc, boots) -> None:
    wait_until(lambda: boot_count(boots, "delete1") == 1, 10, "the first boot")
    assert azure(dc, "delete1", COMPUTE)["evictionPolicy"] == "Delete"
    preempt_seen_and_approved(dc, "delete1")
    wait_until(lambda: not os.path.exists(f"/run/netns/{dc.namespace('delete1')}"), 15, "delete1 to be removed")
    snap = dc.request("snapshot")
    assert "delete1" not in snap["placement"] and snap["stopped_vms"] == []
    assert status_line(dc, "delete1")[2] == "MISSING"
    assert azure(dc, "dealloc1", COMPUTE)["name"] == "dealloc1"  # the other Spot VM is untouched
