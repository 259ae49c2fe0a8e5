"""One-off events of every kind: notices and impacts (Azure's by default), effects and when they end."""

from __future__ import annotations

import random

import pytest

from netsim_imds.azure.events import EVENTS as AZURE, USER_REBOOT
from netsim_imds.events import Kind, Status

from netsim.maintenance.actions import EndEvent
from netsim.maintenance.errors import IllegalInput, MaintenanceError
from netsim.maintenance.planner import Planner
from netsim.maintenance.tables import transition_rows

from tests.maintenance.support import effects, kinds, shown

T = 5000.0


def test_the_minimum_notice_table_is_azures() -> None:
    # shared/reference/cloud-metadata-apis.md section 2.3 (Terminate: the upper bound of 5-15 min).
    assert {r.name: r.notice_s for r in AZURE.kinds.values()} == {
        "Freeze": 900, "Reboot": 900, "Redeploy": 600, "Preempt": 30, "Terminate": 900}
    # Azure has no notice-only event and no stop (a VM it stops is deallocated by its owner).
    assert {AZURE.kind_of(n) for n in AZURE.names()} == set(Kind) - {Kind.NOTICE, Kind.STOP}


@pytest.mark.parametrize("kind", sorted(AZURE.kinds))
def test_notice_defaults_per_type(planner: Planner, kind: Kind) -> None:
    planner.heartbeat("n1", T)
    planner.heartbeat("n2", T)
    event_id = planner.add_event("vm1", "n1", "", kind, T)
    event = planner.event(event_id)
    rule = AZURE.rule(kind)
    assert event.not_before == T + rule.notice_s
    assert planner.next_deadline() == min(T + rule.notice_s, T + 3.0)
    assert (event.status, event.source, event.resources) == ("Scheduled", "Platform", ("vm1",))
    assert event.description == rule.description
    assert event.duration_s == (5 if kind is Kind.PAUSE else None)  # None: unknown (Azure shows -1)
    assert kinds(planner.pop_actions()) == [("file", "n1", "Scheduled")]


@pytest.mark.parametrize("kind, impact", [(Kind.PAUSE, 5), (Kind.REBOOT, 30), (Kind.REDEPLOY, 60),
                                          (Kind.PREEMPT, 0), (Kind.TERMINATE, 0)])
def test_an_unknown_duration_has_the_kinds_default_impact(planner: Planner, kind: Kind, impact: float) -> None:
    # One meaning of "unknown": announced as None (Azure: -1), the effect lasts the flavor's
    # default impact and the event stays Started that long (not the ~3 ms of a clamp to 0).
    for node in ("n1", "n2"):
        planner.heartbeat(node, T)
    event_id = planner.add_event("vm1", "n1", "", kind, T, notice_s=0)
    assert planner.event(event_id).not_after == T + impact
    planner.tick(T)
    (effect,) = effects(planner.pop_actions())
    assert (effect.kind, effect.duration_s) == (kind, impact)
    assert planner.event(event_id).status == "Started"
    given = planner.add_event("vm1", "n1", "", kind, T, notice_s=0, duration_s=2)
    planner.tick(T)
    (effect,) = effects(planner.pop_actions())
    assert effect.duration_s == (0 if kind in (Kind.PREEMPT, Kind.TERMINATE) else 2)
    assert planner.event(given).duration_s == 2
    with pytest.raises(MaintenanceError, match="pass None for an unknown duration"):
        planner.add_event("vm1", "n1", "", kind, T, duration_s=-1)


def test_every_default_is_overridable(rng: random.Random) -> None:
    planner = Planner(rng, notices={"reboot": 60}, impacts={"reboot": 4})
    event = planner.event(planner.add_event("vm1", "n1", "web", "reboot", T))
    assert (event.not_before, event.not_after) == (T + 60, T + 64)
    event = planner.event(planner.add_event("vm1", "n1", "web", "reboot", T, notice_s=5, duration_s=9,
                                            description="why", source="User"))
    assert (event.not_before, event.duration_s, event.description, event.source, event.avset) == (
        T + 5, 9, "why", "User", "web")
    user = planner.event(planner.add_event("vm1", "n1", "", "reboot", T, source="User"))
    assert user.description == USER_REBOOT
    with pytest.raises(MaintenanceError, match="unknown event kinds"):
        Planner(rng, notices={"reboot": 1, "Nap": 2})
    with pytest.raises(MaintenanceError, match="unknown event kinds"):
        Planner(rng, impacts={"Reboot": 1})  # kinds, not a flavor's names
    with pytest.raises(MaintenanceError, match="no event mapping for cloud 'nimbus'"):
        Planner(rng, cloud="nimbus")


def test_finished_events_are_kept_as_history_completed_or_canceled(planner: Planner) -> None:
    done = planner.add_event("vm1", "n1", "", "reboot", T, notice_s=0, duration_s=1)
    dropped = planner.add_event("vm1", "n1", "", "reboot", T, notice_s=60)
    planner.tick(T)
    planner.vm_back("vm1", T + 1)
    planner.cancel_event(dropped, T + 2)
    ended = [a.event for a in planner.pop_actions() if isinstance(a, EndEvent)]
    assert [(e.event_id, e.status, e.ended) for e in ended] == [
        (done, Status.COMPLETED, T + 1), (dropped, Status.CANCELED, T + 2)]
    assert planner.events() == ()


@pytest.mark.parametrize("kw, match", [
    (dict(kind="Nap"), "not one of"),
    (dict(source="Admin"), "not one of"),
    (dict(notice_s=-1), "negative"),
])
def test_bad_one_offs_are_refused(planner: Planner, kw, match) -> None:
    args = dict(vm="vm1", node="n1", avset="", kind="reboot", now=T) | kw
    with pytest.raises(MaintenanceError, match=match):
        planner.add_event(**args)
    assert planner.events() == () and planner.pop_actions() == []


def test_freeze_follows_the_documented_sample_flow(planner: Planner) -> None:
    # Reference 2.2: [] -> Freeze Scheduled (DurationInSeconds 5) -> same id Started -> [].
    event_id = planner.add_event("vm1", "n1", "", "pause", T, notice_s=60)
    log = planner.pop_actions()
    assert [e.status for e in shown(log)["n1"].values()] == ["Scheduled"]
    planner.tick(T + 60)
    step = planner.pop_actions()
    log += step
    assert kinds(step) == [("update", "n1", "Started"), ("effect", "vm1", "pause")]
    assert effects(step)[0].duration_s == 5
    assert shown(log)["n1"][event_id].status == "Started"
    planner.effect_done(event_id, "vm1", T + 65)
    log += planner.pop_actions()
    assert shown(log) == {} and planner.events() == ()
    assert planner.effect_done(event_id, "vm1", T + 66) is False  # a duplicate report changes nothing


def test_preempt_removes_the_vm_after_thirty_seconds(planner: Planner) -> None:
    event_id = planner.add_event("spot1", "n1", "", "preempt", T)
    planner.pop_actions()
    planner.tick(T + 29.9)
    assert planner.pop_actions() == []
    planner.tick(T + 30)
    (effect,) = effects(planner.pop_actions())
    assert (effect.kind, effect.vm, effect.node, effect.duration_s) == ("preempt", "spot1", "n1", 0)
    assert planner.vm_back("spot1", T + 31) is False  # only the deletion ends a Preempt
    assert planner.effect_done(event_id, "spot1", T + 32) is True
    assert kinds(planner.pop_actions()) == [("remove", "n1")]
    assert planner.node_of("spot1") is None


def test_terminate_removes_the_vm_from_later_walks(planner: Planner) -> None:
    event_id = planner.add_event("vm2", "n2", "web", "terminate", T, notice_s=300)
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
    event_id = planner.add_event("vm1", "n1", "web", "redeploy", T)
    assert kinds(planner.pop_actions()) == [("file", "n1", "Scheduled"), ("file", "n2", "Scheduled")]
    planner.heartbeat("n1", T + 599)
    planner.heartbeat("n2", T + 599)
    planner.heartbeat("n3", T + 599)
    planner.tick(T + 600)
    actions = planner.pop_actions()
    (effect,) = effects(actions)
    assert (effect.kind, effect.node, effect.target_node) == ("redeploy", "n1", "n3")
    planner.effect_done(event_id, "vm1", T + 640)
    assert planner.node_of("vm1") == "n3"
    assert sorted(kinds(planner.pop_actions())) == [("remove", "n1"), ("remove", "n2")]


def test_redeploy_needs_another_node(planner: Planner) -> None:
    with pytest.raises(MaintenanceError, match="no other healthy node"):
        planner.add_event("vm1", "n1", "", "redeploy", T)


def test_approval_starts_a_one_off_early_and_notice_can_be_zero(planner: Planner) -> None:
    event_id = planner.add_event("vm1", "n1", "", "reboot", T, duration_s=20)
    planner.approve(event_id, T + 1)
    (effect,) = effects(planner.pop_actions())
    assert (effect.kind, effect.duration_s) == ("reboot", 20)
    assert planner.event(event_id).status == "Started"
    planner.vm_back("vm1", T + 21)
    assert planner.events() == ()


def test_cancel_a_scheduled_one_off_but_not_a_started_one(planner: Planner) -> None:
    first = planner.add_event("vm1", "n1", "", "reboot", T)
    second = planner.add_event("vm1", "n1", "", "pause", T, notice_s=0)
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
    freeze = planner.add_event("vm1", "n1", "", "pause", T, notice_s=10)
    reboot = planner.add_event("vm1", "n1", "", "reboot", T, notice_s=20)
    planner.tick(T + 20)
    assert [e.kind for e in effects(planner.pop_actions())] == ["pause", "reboot"]
    planner.vm_back("vm1", T + 30)  # the reboot brought the VM back: both effects are over
    assert planner.events() == ()
    assert planner.effect_done(freeze, "vm1", T + 31) is False
    assert planner.effect_done(reboot, "vm1", T + 31) is False


def test_the_tables_render_for_docs() -> None:
    rows = transition_rows()
    assert ("event", "SCHEDULED", "APPROVE", "_ev_start", ["FINISHED", "STARTED"]) in rows
    assert ("walk", "IMPACT", "EVENT_DONE", "_walk_next", ["CANCELED", "DONE", "NOTICE"]) in rows


def test_a_notice_has_no_effect_and_completes_when_it_starts(rng: random.Random) -> None:
    from netsim_imds.events import EventMapping, KindRule, register
    register(EventMapping("notices-only", {Kind.NOTICE: KindRule("rebalance", 0.0, 0.0, "fyi")},
                          maintenance_description="m", emergency_description="e", shows_history=True))
    planner = Planner(rng, cloud="notices-only")
    event_id = planner.add_event("vm1", "n1", "", Kind.NOTICE, T, notice_s=10)
    planner.tick(T + 10)
    actions = planner.pop_actions()
    assert effects(actions) == [] and planner.events() == ()
    (ended,) = [a.event for a in actions if isinstance(a, EndEvent)]
    assert (ended.event_id, ended.status, ended.description) == (event_id, "Completed", "fyi")
    with pytest.raises(MaintenanceError, match="not one of"):
        planner.add_event("vm1", "n1", "", Kind.REBOOT, T)  # this flavor cannot show a reboot
    assert Planner.from_dict(planner.to_dict()).mapping.cloud == "notices-only"
