"""The event model in a real datacenter: an unknown duration lasts the kind's impact, the
planner alone writes status (an approval survives a SIGKILL), and the one placement heals a
VM that a Redeploy moved."""

import json
import signal

import pytest

from netsim.maintenance.repository import Repository

from tests.runtime.test_controller import boot_count, boots, curl, dc, topology, wait_until  # noqa: F401

pytestmark = pytest.mark.root

SCHEDULED = "/metadata/scheduledevents?api-version=2020-07-01"


def test_a_reboot_without_duration_is_seen_started_by_a_vm_polling_at_1_hz(dc):
    # Before: a Reboot of unknown duration was down ~3 ms, Started for milliseconds.
    poller = dc.popen("web2", ["sh", "-c", f"for i in $(seq 10); do curl -s -m 1 -H Metadata:true "
                                           f"'http://169.254.169.254{SCHEDULED}'; echo; sleep 1; done"],
                      stdout=-1, text=True)
    event = dc.request("event_add", vm="web1", type="Reboot", **{"in": 1})["event"]
    assert (event["event_type"], event["kind"], event["duration_s"]) == ("Reboot", "reboot", None)
    out, _ = poller.communicate(timeout=30)
    seen = [e for line in out.splitlines() if line.strip() for e in json.loads(line)["Events"]]
    mine = [e for e in seen if e["EventId"] == event["event_id"]]
    assert {e["EventStatus"] for e in mine} == {"Scheduled", "Started"}, out  # web2 is in web1's set
    assert all(e["DurationInSeconds"] == -1 and e["EventType"] == "Reboot" for e in mine)
    assert sum(e["EventStatus"] == "Started" for e in mine) >= 5  # Azure's default impact: 30 s


def test_an_approval_the_daemon_took_just_before_sigkill_is_not_lost(dc, boots):
    wait_until(lambda: boot_count(boots, "web3") == 1, 10, "first boot")
    event = dc.request("event_add", vm="web3", type="Reboot", duration=1, **{"in": 3600})["event"]
    node = dc.request("snapshot")["placement"]["web3"]
    dc.stop_daemon(signal.SIGKILL)
    # What the daemon does on a VM's POST StartRequests before it answers 200: the approval
    # lands in the inbox. The daemon dies before it feeds the planner.
    with Repository(dc.state.file("events.db")) as repo:
        assert repo.view(node).approve(event["event_id"]) is True
        assert repo.event(node, event["event_id"]).status == "Scheduled"  # the view wrote no status
    dc.start_daemon()
    wait_until(lambda: boot_count(boots, "web3") == 2, 15, "the approved reboot")
    wait_until(lambda: not dc.request("events")["events"], 10, "the event to complete")
    with Repository(dc.state.file("events.db")) as repo:
        assert repo.approvals() == []
        assert [(e.event_id, e.status) for e in repo.history()] == [(event["event_id"], "Completed")]


def test_a_vm_moved_by_redeploy_is_healed_when_its_new_node_fails(datacenter_factory, host_exec, boots):
    # The bug: start_walk handed the planner the topology's nodes, so web1 (moved to n2)
    # was believed on n1 again and stayed on the failed n2 for good, its metadata unreachable.
    # One VM per node (three fault domains), so the Redeploy picks n2, as in the report.
    dc = datacenter_factory(topology(boots).replace("update_domains = 3\n", "update_domains = 3\nfault_domains = 3\n"))
    assert dc.request("snapshot")["placement"] == {"web1": "n1", "web2": "n2", "web3": "n3"}
    dc.request("event_add", vm="web1", type="Redeploy", duration=2, **{"in": 1})
    wait_until(lambda: (s := dc.request("snapshot"))["placement"]["web1"] == "n2" and not s["events"], 20,
               "the redeploy to n2")
    dc.request("walk_start", avset="web", notice=300, downtime=5)
    dc.request("node_fail", node="n2")
    snap = wait_until(lambda: (s := dc.request("snapshot"))["placement"]["web1"] != "n2"
                      and s["placement"]["web2"] != "n2" and s, 20, "healing of web1 and web2")
    assert {snap["placement"]["web1"], snap["placement"]["web2"]} <= {"n1", "n3"}
    answer = wait_until(lambda: curl(host_exec, "web1", "/metadata/v1/InstanceInfo"), 10, "web1's metadata")
    assert json.loads(answer)["ID"] == "web1"
    dc.request("node_recover", node="n2")
