"""Planned maintenance walks of an availability set, on invented timelines."""

from __future__ import annotations

import random

import pytest

from netsim.maintenance.actions import ApplyEffect, FileEvent, RemoveEvent, UpdateEvent
from netsim.maintenance.errors import IllegalInput, MaintenanceError, UnknownWalk, WalkInProgress
from netsim.maintenance.planner import Planner, walk_members
from netsim_imds.azure.events import MAINTENANCE
from netsim.model.topology import grid

from tests.maintenance.support import WEB, effects, kinds, shown

T = 1000.0


def test_walk_files_one_reboot_event_for_the_first_update_domain(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    actions = planner.pop_actions()
    # Broadcast: every node holding a VM of the set shows the event (n3 holds vm5).
    assert kinds(actions) == [("file", "n1", "Scheduled"), ("file", "n2", "Scheduled"), ("file", "n3", "Scheduled")]
    event = actions[0].event
    assert all(a.event == event for a in actions)
    assert (event.kind, event.resources, event.not_before, event.created) == ("reboot", ("vm1", "vm2"), T + 900, T)
    assert (event.description, event.source, event.duration_s, event.avset) == (MAINTENANCE, "Platform", 60, "web")
    assert planner.next_deadline() == T + 900
    status = planner.walk_status(walk_id)
    assert (status.state, status.current_ud, status.done_uds, status.pending_uds) == ("notice", 0, (), (1, 2))
    assert (status.event_id, status.not_before) == (event.event_id, T + 900)


def test_the_event_starts_exactly_at_not_before(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    planner.pop_actions()
    planner.tick(T + 899.999)
    assert planner.pop_actions() == []
    planner.tick(T + 900)
    actions = planner.pop_actions()
    assert kinds(actions) == [("update", "n1", "Started"), ("update", "n2", "Started"), ("update", "n3", "Started"),
                              ("effect", "vm1", "reboot"), ("effect", "vm2", "reboot")]
    assert [(e.node, e.duration_s, e.target_node) for e in effects(actions)] == [("n1", 60, None), ("n2", 60, None)]
    assert planner.walk_status(walk_id).state == "impact"
    assert planner.next_deadline() is None  # nothing more until the VMs are back


def test_next_update_domain_only_after_every_vm_is_back_with_a_fresh_notice(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    planner.tick(T + 900)
    first = planner.walk_status(walk_id).event_id
    planner.pop_actions()
    assert planner.vm_back("vm1", T + 960) is True
    assert planner.pop_actions() == []
    assert planner.walk_status(walk_id).current_ud == 0
    planner.vm_back("vm2", T + 975)
    actions = planner.pop_actions()
    assert kinds(actions)[:3] == [("remove", "n1"), ("remove", "n2"), ("remove", "n3")]
    assert {a.event_id for a in actions[:3]} == {first}
    filed = [a for a in actions if isinstance(a, FileEvent)]
    assert {a.event.resources for a in filed} == {("vm3", "vm4")}
    assert filed[0].event.not_before == T + 975 + 900
    status = planner.walk_status(walk_id)
    assert (status.current_ud, status.done_uds, status.pending_uds) == (1, (0,), (2,))
    assert planner.next_deadline() == T + 975 + 900


def test_a_whole_walk_never_has_two_update_domains_at_once() -> None:
    planner = Planner(random.Random(3))
    members = [(f"vm{i}", f"n{i % 4}", i % 5) for i in range(20)]
    walk_id = planner.start_walk("web", members, 600, 30, T)
    log, order, now = [], [], T
    while planner.walk_status(walk_id).state != "done":
        log += planner.pop_actions()
        live = {e.event_id for evs in shown(log).values() for e in evs.values()}
        assert len(live) == 1, "two update domains at once"
        now = planner.next_deadline()
        planner.tick(now)
        started = effects(planner.pop_actions())
        order.append(planner.walk_status(walk_id).current_ud)
        assert {e.vm for e in started} == {m[0] for m in members if m[2] == order[-1]}
        for e in started:
            now += 30
            planner.vm_back(e.vm, now)
    log += planner.pop_actions()
    assert order == [0, 1, 2, 3, 4]
    assert shown(log) == {}
    status = planner.walk_status(walk_id)
    assert (status.current_ud, status.done_uds, status.pending_uds, status.finished_at) == (None, (0, 1, 2, 3, 4), (), now)
    assert planner.next_deadline() is None and planner.events() == ()


def test_approval_starts_the_update_domain_early(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    planner.pop_actions()
    event_id = planner.walk_status(walk_id).event_id
    assert planner.approve(event_id, T + 120) is True
    actions = planner.pop_actions()
    assert [a.event.status for a in actions if isinstance(a, UpdateEvent)] == ["Started"] * 3
    assert [e.vm for e in effects(actions)] == ["vm1", "vm2"]
    assert planner.walk_status(walk_id).state == "impact"
    # Approving again is fine and changes nothing; NotBefore no longer fires anything.
    assert planner.approve(event_id, T + 121) is True
    planner.tick(T + 900)
    assert planner.pop_actions() == []
    assert planner.approve("no-such-event", T) is False


def test_a_second_walk_of_the_same_set_is_refused_naming_the_walk(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    with pytest.raises(WalkInProgress, match=f"web.*{walk_id}") as info:
        planner.start_walk("web", WEB, 900, 60, T + 1)
    assert info.value.walk_id == walk_id
    other = planner.start_walk("db", [("db1", "n1", 0)], 900, 60, T + 2)
    assert other != walk_id
    assert [w.walk_id for w in planner.walks()] == [walk_id, other]


def test_a_finished_walk_frees_the_set(planner: Planner) -> None:
    first = planner.start_walk("db", [("db1", "n1", 0)], 0, 0, T)
    planner.tick(T)
    planner.vm_back("db1", T + 1)
    assert planner.walk_status(first).state == "done"
    second = planner.start_walk("db", [("db1", "n1", 0)], 0, 0, T + 2)
    assert planner.walk_status(second).state == "notice"


def test_update_domains_are_walked_in_ascending_order_whatever_the_input_order(planner: Planner) -> None:
    walk_id = planner.start_walk("web", [("a", "n1", 4), ("b", "n2", 0), ("c", "n1", 2)], 10, 1, T)
    assert planner.walk_status(walk_id).pending_uds == (2, 4)
    assert planner.event(planner.walk_status(walk_id).event_id).resources == ("b",)


def test_zero_notice_starts_at_the_next_tick(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 0, 5, T)
    assert planner.next_deadline() == T
    planner.tick(T)
    assert planner.walk_status(walk_id).state == "impact"


def test_cancel_during_notice_withdraws_the_event(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    planner.pop_actions()
    planner.cancel_walk(walk_id, T + 10)
    assert kinds(planner.pop_actions()) == [("remove", "n1"), ("remove", "n2"), ("remove", "n3")]
    status = planner.walk_status(walk_id)
    assert (status.state, status.current_ud, status.pending_uds, status.finished_at) == ("canceled", None, (0, 1, 2), T + 10)
    with pytest.raises(IllegalInput, match="CANCELED"):
        planner.cancel_walk(walk_id, T + 11)
    planner.start_walk("web", WEB, 900, 60, T + 12)  # the set is free again


def test_cancel_during_impact_lets_the_rebooting_domain_finish(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 0, 60, T)
    planner.tick(T)
    planner.cancel_walk(walk_id, T + 1)
    assert planner.walk_status(walk_id).state == "impact"
    planner.vm_back("vm1", T + 60)
    planner.vm_back("vm2", T + 61)
    status = planner.walk_status(walk_id)
    assert (status.state, status.done_uds, status.pending_uds) == ("canceled", (0,), (1, 2))
    assert planner.events() == ()


def test_a_vm_deleted_meanwhile_is_skipped_and_an_empty_domain_too(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 0, 1, T)
    planner.vm_removed("vm5", T)
    planner.tick(T)
    planner.vm_back("vm1", T + 1)
    planner.vm_back("vm2", T + 1)
    planner.tick(T + 1)
    planner.vm_removed("vm3", T + 2)  # UD 1 started: vm3 no longer counts
    planner.vm_back("vm4", T + 3)
    status = planner.walk_status(walk_id)
    assert (status.state, status.done_uds) == ("done", (0, 1, 2))


def test_a_vm_booting_for_other_reasons_is_ignored(planner: Planner) -> None:
    planner.start_walk("web", WEB, 900, 60, T)
    assert planner.vm_back("vm1", T + 1) is False  # its event has not started
    assert planner.vm_back("stranger", T + 1) is False


def test_reporting_an_effect_before_the_event_started_is_refused(planner: Planner) -> None:
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    with pytest.raises(IllegalInput, match="SCHEDULED"):
        planner.effect_done(planner.walk_status(walk_id).event_id, "vm1", T)


@pytest.mark.parametrize("args, match", [
    (("", WEB, 1, 1), "availability set name"),
    (("web", [], 1, 1), "no VMs"),
    (("web", [("a", "n1", 0), ("a", "n2", 1)], 1, 1), "listed twice"),
    (("web", WEB, -1, 1), "negative"),
])
def test_bad_walks_are_refused_with_advice(planner: Planner, args, match) -> None:
    with pytest.raises(MaintenanceError, match=match):
        planner.start_walk(*args, T)
    assert planner.walks() == () and planner.pop_actions() == []


def test_unknown_walk_says_where_to_look(planner: Planner) -> None:
    with pytest.raises(UnknownWalk, match="maintenance status"):
        planner.walk_status("walk-9")


def test_walk_members_of_a_topology() -> None:
    dc = grid("t", nodes=2, vms_per_node=3)
    members = walk_members(dc, "grid")
    assert members[:3] == [("vm1", "n1", 0), ("vm2", "n1", 1), ("vm3", "n1", 2)]
    planner = Planner.for_datacenter(dc, random.Random(1), T)
    walk_id = planner.start_walk("grid", members, 900, 60, T)
    assert planner.walk_status(walk_id).pending_uds == (1, 2, 3, 4)
    # The next deadline is the earliest of NotBefore and the nodes' heartbeat timeouts.
    assert planner.next_deadline() == T + 3.0


def test_status_is_json_ready(planner: Planner) -> None:
    import json
    walk_id = planner.start_walk("web", WEB, 900, 60, T)
    doc = json.loads(json.dumps(planner.walk_status(walk_id).to_dict()))
    assert doc["current_ud"] == 0 and doc["pending_uds"] == [1, 2] and doc["state"] == "notice"


def test_actions_are_frozen_and_carry_keys(planner: Planner) -> None:
    planner.start_walk("web", WEB, 0, 60, T)
    planner.tick(T)
    actions = planner.pop_actions()
    with pytest.raises(AttributeError):
        actions[0].node = "x"  # type: ignore[misc]
    event_id = actions[0].event.event_id
    assert actions[0].key == f"{event_id}/n1/file"
    assert [a.key for a in actions if isinstance(a, ApplyEffect)] == [f"{event_id}/vm1/effect", f"{event_id}/vm2/effect"]
    assert not any(isinstance(a, RemoveEvent) for a in actions)
