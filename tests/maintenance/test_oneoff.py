"""One-off events of every Azure type: notices, effects and when they disappear."""

from __future__ import annotations

import random

import pytest

from netsim.maintenance.errors import IllegalInput, MaintenanceError
from netsim.maintenance.planner import Planner
from netsim.maintenance.tables import (DEFAULT_DESCRIPTION, DEFAULT_DURATION_S, MIN_NOTICE_S, USER_DESCRIPTION,
                                       transition_rows)

from tests.maintenance.support import effects, kinds, shown

T = 5000.0


def test_the_minimum_notice_table_is_azures() -> None:
    # shared/reference/cloud-metadata-apis.md section 2.3 (Terminate: the upper bound of 5-15 min).
    assert dict(MIN_NOTICE_S) == {"Freeze": 900, "Reboot": 900, "Redeploy": 600, "Preempt": 30, "Terminate": 900}


@pytest.mark.parametrize("event_type", sorted(MIN_NOTICE_S))
def test_notice_defaults_per_type(planner: Planner, event_type: str) -> None:
    planner.heartbeat("n1", T)
    planner.heartbeat("n2", T)
    event_id = planner.add_event("vm1", "n1", "", event_type, T)
    event = planner.event(event_id)
    assert event.not_before == T + MIN_NOTICE_S[event_type]
    assert planner.next_deadline() == min(T + MIN_NOTICE_S[event_type], T + 3.0)
    assert (event.status, event.source, event.resources) == ("Scheduled", "Platform", ("vm1",))
    assert event.description == DEFAULT_DESCRIPTION[event_type]
    assert event.duration_s == DEFAULT_DURATION_S[event_type]
    assert kinds(planner.pop_actions()) == [("file", "n1", "Scheduled")]


def test_every_default_is_overridable(rng: random.Random) -> None:
    planner = Planner(rng, notices={"Reboot": 60})
    event = planner.event(planner.add_event("vm1", "n1", "web", "Reboot", T))
    assert event.not_before == T + 60
    event = planner.event(planner.add_event("vm1", "n1", "web", "Reboot", T, notice_s=5, duration_s=9,
                                            description="why", source="User"))
    assert (event.not_before, event.duration_s, event.description, event.source, event.avset) == (
        T + 5, 9, "why", "User", "web")
    user = planner.event(planner.add_event("vm1", "n1", "", "Reboot", T, source="User"))
    assert user.description == USER_DESCRIPTION
    with pytest.raises(MaintenanceError, match="unknown event types"):
        Planner(rng, notices={"Reboot": 1, "Nap": 2})


@pytest.mark.parametrize("kw, match", [
    (dict(event_type="Nap"), "not one of"),
    (dict(source="Admin"), "not one of"),
    (dict(notice_s=-1), "negative"),
])
def test_bad_one_offs_are_refused(planner: Planner, kw, match) -> None:
    args = dict(vm="vm1", node="n1", avset="", event_type="Reboot", now=T) | kw
    with pytest.raises(MaintenanceError, match=match):
        planner.add_event(**args)
    assert planner.events() == () and planner.pop_actions() == []


def test_freeze_follows_the_documented_sample_flow(planner: Planner) -> None:
    # Reference 2.2: [] -> Freeze Scheduled (DurationInSeconds 5) -> same id Started -> [].
    event_id = planner.add_event("vm1", "n1", "", "Freeze", T, notice_s=60)
    log = planner.pop_actions()
    assert [e.status for e in shown(log)["n1"].values()] == ["Scheduled"]
    planner.tick(T + 60)
    step = planner.pop_actions()
    log += step
    assert kinds(step) == [("update", "n1", "Started"), ("effect", "vm1", "Freeze")]
    assert effects(step)[0].duration_s == 5
    assert shown(log)["n1"][event_id].status == "Started"
    planner.effect_done(event_id, "vm1", T + 65)
    log += planner.pop_actions()
    assert shown(log) == {} and planner.events() == ()
    assert planner.effect_done(event_id, "vm1", T + 66) is False  # a duplicate report changes nothing


def test_preempt_removes_the_vm_after_thirty_seconds(planner: Planner) -> None:
    event_id = planner.add_event("spot1", "n1", "", "Preempt", T)
    planner.pop_actions()
    planner.tick(T + 29.9)
    assert planner.pop_actions() == []
    planner.tick(T + 30)
    (effect,) = effects(planner.pop_actions())
    assert (effect.kind, effect.vm, effect.node, effect.duration_s) == ("Preempt", "spot1", "n1", 0)
    assert planner.vm_back("spot1", T + 31) is False  # only the deletion ends a Preempt
    assert planner.effect_done(event_id, "spot1", T + 32) is True
    assert kinds(planner.pop_actions()) == [("remove", "n1")]
    assert planner.node_of("spot1") is None


def test_terminate_removes_the_vm_from_later_walks(planner: Planner) -> None:
    event_id = planner.add_event("vm2", "n2", "web", "Terminate", T, notice_s=300)
    walk_id = planner.start_walk("web", [("vm1", "n1", 0), ("vm2", "n2", 1)], 900, 60, T)
    planner.tick(T + 300)
    planner.effect_done(event_id, "vm2", T + 301)
    planner.tick(T + 900)
    planner.vm_back("vm1", T + 960)
    status = planner.walk_status(walk_id)
    assert (status.state, status.done_uds) == ("done", (0, 1))  # UD 1 only held vm2


def test_redeploy_moves_the_vm_to_the_least_loaded_healthy_node(planner: Planner) -> None:
    for node in ("n1", "n2", "n3"):
        planner.heartbeat(node, T)
    planner.add_vm("other", "n2", "web")
    event_id = planner.add_event("vm1", "n1", "web", "Redeploy", T)
    assert kinds(planner.pop_actions()) == [("file", "n1", "Scheduled"), ("file", "n2", "Scheduled")]
    planner.heartbeat("n1", T + 599)
    planner.heartbeat("n2", T + 599)
    planner.heartbeat("n3", T + 599)
    planner.tick(T + 600)
    actions = planner.pop_actions()
    (effect,) = effects(actions)
    assert (effect.kind, effect.node, effect.target_node) == ("Redeploy", "n1", "n3")
    planner.effect_done(event_id, "vm1", T + 640)
    assert planner.node_of("vm1") == "n3"
    assert sorted(kinds(planner.pop_actions())) == [("remove", "n1"), ("remove", "n2")]


def test_redeploy_needs_another_node(planner: Planner) -> None:
    with pytest.raises(MaintenanceError, match="no other healthy node"):
        planner.add_event("vm1", "n1", "", "Redeploy", T)


def test_approval_starts_a_one_off_early_and_notice_can_be_zero(planner: Planner) -> None:
    event_id = planner.add_event("vm1", "n1", "", "Reboot", T, duration_s=20)
    planner.approve(event_id, T + 1)
    (effect,) = effects(planner.pop_actions())
    assert (effect.kind, effect.duration_s) == ("Reboot", 20)
    assert planner.event(event_id).status == "Started"
    planner.vm_back("vm1", T + 21)
    assert planner.events() == ()


def test_cancel_a_scheduled_one_off_but_not_a_started_one(planner: Planner) -> None:
    first = planner.add_event("vm1", "n1", "", "Reboot", T)
    second = planner.add_event("vm1", "n1", "", "Freeze", T, notice_s=0)
    planner.pop_actions()
    planner.cancel_event(first, T + 1)
    assert kinds(planner.pop_actions()) == [("remove", "n1")]
    planner.tick(T + 1)
    with pytest.raises(IllegalInput, match="STARTED"):
        planner.cancel_event(second, T + 2)
    with pytest.raises(MaintenanceError, match="no live event"):
        planner.cancel_event(first, T + 3)
    walk_id = planner.start_walk("web", [("w1", "n1", 0)], 60, 1, T)
    with pytest.raises(MaintenanceError, match="cancel the walk"):
        planner.cancel_event(planner.walk_status(walk_id).event_id, T)


def test_several_events_of_one_vm_coexist_and_end_separately(planner: Planner) -> None:
    freeze = planner.add_event("vm1", "n1", "", "Freeze", T, notice_s=10)
    reboot = planner.add_event("vm1", "n1", "", "Reboot", T, notice_s=20)
    planner.tick(T + 20)
    assert [e.kind for e in effects(planner.pop_actions())] == ["Freeze", "Reboot"]
    planner.vm_back("vm1", T + 30)  # the reboot brought the VM back: both effects are over
    assert planner.events() == ()
    assert planner.effect_done(freeze, "vm1", T + 31) is False
    assert planner.effect_done(reboot, "vm1", T + 31) is False


def test_the_tables_render_for_docs() -> None:
    rows = transition_rows()
    assert ("event", "SCHEDULED", "APPROVE", "_ev_start", ["FINISHED", "STARTED"]) in rows
    assert ("walk", "IMPACT", "EVENT_DONE", "_walk_next", ["CANCELED", "DONE", "NOTICE"]) in rows
