"""A stopped VM (AWS instance-stop, spot stop) under later maintenance, on invented timelines:
nothing boots it; its share of a pause, reboot, redeploy or stop completes at the start;
healing moves it without booting it; a removal still removes it; ``vm_started`` ends it."""

from __future__ import annotations

import random

import pytest

from netsim_imds.events import Status

from netsim.maintenance.actions import EndEvent, Heal
from netsim.maintenance.planner import Planner

from tests.maintenance.support import effects

T = 5000.0
WEB = [("vm1", "n1", 0), ("vm2", "n2", 0), ("vm3", "n1", 1)]


@pytest.fixture
def aws(rng: random.Random) -> Planner:
    """An AWS planner knowing nodes n1, n2 (a stop exists in this flavor)."""
    planner = Planner(rng, cloud="aws")
    for node in ("n1", "n2"):
        planner.heartbeat(node, T)
    return planner


def stop(planner: Planner, vm: str, node: str, now: float = T) -> None:
    event_id = planner.add_event(vm, node, "web", "stop", now, notice_s=0)  # instance-stop
    planner.tick(now)
    (effect,) = effects(planner.pop_actions())
    assert (effect.kind, effect.vm) == ("stop", vm)
    assert planner.stopped_vms() == []  # off once the agent reports it so
    planner.effect_done(event_id, vm, now)
    planner.pop_actions()


def ended(actions) -> list:
    return [a.event for a in actions if isinstance(a, EndEvent)]


def test_a_walk_reaching_a_stopped_vm_leaves_it_off_and_completes_its_share(aws: Planner) -> None:
    stop(aws, "vm1", "n1")
    assert aws.stopped_vms() == ["vm1"]
    walk_id = aws.start_walk("web", WEB, notice_s=10, downtime_s=5, now=T + 1)
    aws.pop_actions()
    aws.tick(T + 11)
    step = aws.pop_actions()
    assert [(e.vm, e.kind) for e in effects(step)] == [("vm2", "reboot")]  # not vm1
    (rec,) = [r for r in aws.events() if r.status is Status.STARTED]
    aws.vm_back("vm2", T + 16)
    assert [(e.event_id, e.status) for e in ended(aws.pop_actions())] == [(rec.event_id, Status.COMPLETED)]
    assert aws.walk_status(walk_id).done_uds == (0,) and aws.stopped_vms() == ["vm1"]


def test_an_update_domain_of_stopped_vms_completes_at_its_start_and_the_walk_goes_on(aws: Planner) -> None:
    stop(aws, "vm3", "n1")
    walk_id = aws.start_walk("web", WEB, notice_s=10, downtime_s=5, now=T)
    aws.tick(T + 10)
    aws.vm_back("vm1", T + 15)
    aws.vm_back("vm2", T + 15)
    aws.pop_actions()
    aws.tick(T + 25)  # UD 1 holds vm3 only: nothing to do, Completed at once
    step = aws.pop_actions()
    assert effects(step) == [] and [e.status for e in ended(step)] == [Status.COMPLETED]
    assert aws.walk_status(walk_id).state == "done"


@pytest.mark.parametrize("kind, code", [("pause", ""), ("reboot", "instance-reboot"), ("stop", "spot-interruption:stop")])
def test_one_off_downtime_on_a_stopped_vm_has_no_effect(aws: Planner, kind: str, code: str) -> None:
    stop(aws, "vm1", "n1")
    aws.add_event("vm1", "n1", "web", kind, T + 1, notice_s=0, code=code)
    aws.tick(T + 1)
    step = aws.pop_actions()
    assert effects(step) == [] and [e.status for e in ended(step)] == [Status.COMPLETED]
    assert aws.stopped_vms() == ["vm1"]


def test_a_termination_still_removes_a_stopped_vm(aws: Planner) -> None:
    stop(aws, "vm1", "n1")
    event_id = aws.add_event("vm1", "n1", "web", "terminate", T + 1, notice_s=0)
    aws.tick(T + 1)
    assert [e.kind for e in effects(aws.pop_actions())] == ["terminate"]
    aws.effect_done(event_id, "vm1", T + 1)
    assert aws.node_of("vm1") is None and aws.stopped_vms() == []


def test_healing_moves_a_stopped_vm_without_booting_it(aws: Planner) -> None:
    stop(aws, "vm1", "n1")
    aws.add_vm("vm3", "n1", "web")
    aws.node_failed("n1", ["n2"], T + 1)
    heals = {a.vm: a for a in aws.pop_actions() if isinstance(a, Heal)}
    assert heals["vm1"].stay_off and not heals["vm3"].stay_off
    assert aws.vm_back("vm1", T + 2)  # reported as any healing
    assert aws.node_of("vm1") == "n2" and aws.stopped_vms() == ["vm1"]


def test_a_started_vm_is_maintained_again_and_the_state_survives_a_restart(aws: Planner, rng) -> None:
    stop(aws, "vm1", "n1")
    again = Planner.from_dict(aws.to_dict(), random.Random())
    assert again.stopped_vms() == ["vm1"]
    assert again.vm_started("vm1") is True and again.vm_started("vm1") is False
    again.add_event("vm1", "n1", "web", "reboot", T + 1, notice_s=0)
    again.tick(T + 1)
    assert [(e.vm, e.kind) for e in effects(again.pop_actions())] == [("vm1", "reboot")]
    saved = again.to_dict()
    del saved["fleet"]["stopped"]  # a state saved before stopped VMs were kept
    assert Planner.from_dict(saved, random.Random()).stopped_vms() == []
