"""Planned maintenance walks and service healing on an AWS datacenter (needs root): the VMs
see them in AWS's shapes (code, times, EventId), they really happen (the VMs reboot, move),
and ``events/maintenance/history`` shows them ``[Completed] `` afterwards. A VM that an
instance-stop powered off is not powered on by a walk (AWS does not reboot a stopped
instance): its maintenance completes while it is off and ``netsim vm start`` boots it;
healing moves a stopped VM off a failed node without booting it.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.runtime.test_controller import boot_count, boots  # noqa: F401 (boots: a fixture)
from tests.server.aws.support import curl, event_time, events_of, link_up, netsim, status, wait_until

pytestmark = pytest.mark.root

EVENT_ID = re.compile(r"^instance-event-[0-9a-f]{17}$")


def topology(boots) -> str:
    vms = "".join(f'[[vm]]\nname = "web{i}"\navailability_set = "web"\nhttp_tokens = "required"\n'
                  f'services = ["echo boot >> {boots}/$NETSIM_VM; exec sleep 600"]\n' for i in (1, 2, 3))
    return ('[datacenter]\ncloud = "aws"\nlinklocal = "static"\n'
            '[[node]]\nname = "n1"\n[[node]]\nname = "n2"\n'
            '[[availability_set]]\nname = "web"\nupdate_domains = 3\nfault_domains = 2\n' + vms)


@pytest.fixture
def dc(datacenter_factory, boots):
    return datacenter_factory(topology(boots))


def v2(dc, vm: str, which: str) -> list[dict]:
    """``events_of`` over IMDSv2 (the VMs of this topology require tokens)."""
    token = curl(dc, vm, "/latest/api/token", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60")
    assert token, f"{vm} got no token"
    return events_of(dc, vm, which, "-H", f"X-aws-ec2-metadata-token: {token}")


def walk_done(dc) -> bool:
    walks = dc.request("snapshot")["walks"]
    return bool(walks) and walks[-1]["state"] == "done"


def test_a_walk_is_announced_in_aws_shapes_reboots_each_vm_and_ends_in_history(dc, boots) -> None:
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 1 for i in (1, 2, 3)), 10, "first boots")
    started = time.time()
    netsim(dc, "maintenance", "start", "web", "--notice", "3", "--downtime", "1")
    (event,) = v2(dc, "web1", "scheduled")  # the first update domain: web1's own event
    assert event["Code"] == "system-reboot" and event["State"] == "active"
    assert event["Description"] == "scheduled reboot" and EVENT_ID.match(event["EventId"])
    not_before, not_after = event_time(event["NotBefore"]), event_time(event["NotAfter"])
    assert abs(not_before - (started + 3)) <= 2 and not_after >= not_before
    assert event_time(event["NotBeforeDeadline"]) > not_before
    assert v2(dc, "web2", "scheduled") == []  # not its update domain yet; and EC2 shows no set's events
    wait_until(lambda: walk_done(dc), 60, "the walk to end")
    # Each VM really rebooted once (its declared service started again) ...
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 2 for i in (1, 2, 3)), 10, "second boots")
    # ... and keeps its own event as history, completed.
    ids = set()
    for vm in ("web1", "web2", "web3"):
        assert v2(dc, vm, "scheduled") == []
        (done,) = v2(dc, vm, "history")
        assert done["Code"] == "system-reboot" and done["State"] == "completed", done
        assert done["Description"] == "[Completed] scheduled reboot" and EVENT_ID.match(done["EventId"])
        ids.add(done["EventId"])
    assert event["EventId"] in ids and len(ids) == 3  # one event per update domain
    assert status(dc, "web1", "/latest/meta-data/events/maintenance/history") == "401"  # still IMDSv2 only


def test_service_healing_moves_the_failed_nodes_vms_and_history_shows_it_completed(dc, boots) -> None:
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 1 for i in (1, 2, 3)), 10, "first boots")
    on_n1 = sorted(vm for vm, node in dc.request("snapshot")["placement"].items() if node == "n1")
    assert on_n1 == ["web1", "web3"]
    netsim(dc, "node", "fail", "n1")
    try:
        wait_until(lambda: all(dc.request("snapshot")["placement"][vm] == "n2" for vm in on_n1), 20, "healing")
        for vm in on_n1:  # booted again on n2, answered by n2's metadata server
            wait_until(lambda: boot_count(boots, vm) == 2, 10, f"{vm} to boot on n2")
            (done,) = wait_until(lambda: v2(dc, vm, "history"), 10, f"the healing of {vm} in its history")
            assert done["Code"] == "system-reboot" and done["State"] == "completed"
            assert done["Description"] == "[Completed] The instance is running on degraded hardware"
            assert EVENT_ID.match(done["EventId"]) and v2(dc, vm, "scheduled") == []
        assert v2(dc, "web2", "history") == [] and boot_count(boots, "web2") == 1  # untouched
    finally:
        netsim(dc, "node", "recover", "n1")


def test_a_walk_leaves_a_stopped_vm_off_and_vm_start_boots_it_with_both_events_in_history(dc, boots) -> None:
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 1 for i in (1, 2, 3)), 10, "first boots")
    netsim(dc, "event", "add", "web1", "--type", "instance-stop", "--in", "0")
    wait_until(lambda: dc.request("snapshot")["stopped_vms"] == ["web1"], 10, "web1 to be stopped")
    assert not link_up(dc, "web1")
    netsim(dc, "maintenance", "start", "web", "--notice", "1", "--downtime", "1")
    wait_until(lambda: walk_done(dc), 60, "the walk to end")
    wait_until(lambda: all(boot_count(boots, vm) == 2 for vm in ("web2", "web3")), 10, "the others' reboots")
    # AWS does not start a stopped instance for maintenance: web1 is still off, not booted.
    assert not link_up(dc, "web1") and boot_count(boots, "web1") == 1
    assert status(dc, "web1", "/latest/meta-data/") == "000"  # no answer: it is off
    assert "stopped (off until netsim vm start): web1" in netsim(dc, "maintenance", "status")
    netsim(dc, "vm", "start", "web1")
    wait_until(lambda: boot_count(boots, "web1") == 2, 10, "web1 to boot")
    history = wait_until(lambda: v2(dc, "web1", "history"), 10, "web1 to answer")
    assert [(e["Code"], e["State"]) for e in history] == [("instance-stop", "completed"),
                                                           ("system-reboot", "completed")]
    assert history[1]["Description"] == "[Completed] scheduled reboot"
    assert dc.request("snapshot")["stopped_vms"] == []
    # Started again, it is maintained again: a reboot reboots it.
    netsim(dc, "event", "add", "web1", "--type", "instance-reboot", "--in", "0", "--duration", "1")
    wait_until(lambda: boot_count(boots, "web1") == 3, 15, "the reboot of the started web1")


def test_healing_moves_a_stopped_vm_off_the_failed_node_without_booting_it(dc, boots) -> None:
    wait_until(lambda: all(boot_count(boots, f"web{i}") == 1 for i in (1, 2, 3)), 10, "first boots")
    netsim(dc, "event", "add", "web1", "--type", "spot-interruption", "--action", "stop", "--in", "0")
    wait_until(lambda: dc.request("snapshot")["stopped_vms"] == ["web1"], 10, "web1 to be stopped")
    netsim(dc, "node", "fail", "n1")
    try:
        wait_until(lambda: all(dc.request("snapshot")["placement"][vm] == "n2" for vm in ("web1", "web3")), 20,
                   "healing")
        wait_until(lambda: boot_count(boots, "web3") == 2, 10, "web3 to boot on n2")
        wait_until(lambda: not dc.request("snapshot")["events"], 10, "the healing to complete")
        assert not link_up(dc, "web1") and boot_count(boots, "web1") == 1  # moved, still off
        netsim(dc, "vm", "start", "web1")
        wait_until(lambda: boot_count(boots, "web1") == 2, 10, "web1 to boot on n2")
        # answered by n2 now; a spot interruption is no scheduled event: only the healing is history
        (done,) = wait_until(lambda: v2(dc, "web1", "history"), 10, "web1 to answer from n2")
        assert (done["Code"], done["State"]) == ("system-reboot", "completed")
        assert dc.request("snapshot")["stopped_vms"] == []
    finally:
        netsim(dc, "node", "recover", "n1")
