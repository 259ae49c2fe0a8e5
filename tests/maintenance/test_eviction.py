"""Azure's Spot eviction on invented timelines: a Preempt deletes a VM whose eviction policy is
Delete (and a Regular one), and stops one whose policy is Deallocate, which stays known to
the planner, off until ``vm_started``, and survives a restart of the planner."""

from __future__ import annotations

import json
import random

import pytest

from netsim.maintenance.planner import Planner
from netsim.model.load import parse

from tests.maintenance.support import effects

T = 7000.0
TOPOLOGY = """
[[node]]
name = "n1"
[[node]]
name = "n2"
[[vm]]
name = "dealloc"
priority = "Spot"
[[vm]]
name = "delete"
priority = "Spot"
eviction_policy = "Delete"
[[vm]]
name = "low"
priority = "Low"
eviction_policy = "Deallocate"
[[vm]]
name = "regular"
"""


def planner(cloud: str = "azure") -> Planner:
    dc = parse(f'[datacenter]\ncloud = "{cloud}"\n' + TOPOLOGY, "spot.toml")
    return Planner.for_datacenter(dc, random.Random(3), T, cloud=cloud)


def preempt(p: Planner, vm: str, now: float = T) -> str:
    """Preempt ``vm`` at ``now`` with no notice; the effect's kind."""
    event_id = p.add_event(vm, p.node_of(vm), "", "preempt", now, notice_s=0)
    p.tick(now)
    (effect,) = effects(p.pop_actions())
    assert effect.vm == vm
    p.effect_done(event_id, vm, now)
    p.pop_actions()
    return effect.kind


@pytest.mark.parametrize("vm, kind, stays", [
    ("dealloc", "stop", True),    # Spot, Deallocate by default: stopped
    ("low", "stop", True),        # Low priority, Deallocate
    ("delete", "preempt", False),  # Spot, Delete: removed
    ("regular", "preempt", False),  # Azure never evicts a Regular VM: netsim deletes it, as Delete
])
def test_a_preempt_follows_the_eviction_policy(vm: str, kind: str, stays: bool) -> None:
    p = planner()
    assert preempt(p, vm) == kind
    assert (p.node_of(vm) is not None) is stays
    assert p.stopped_vms() == ([vm] if stays else [])
    assert p.events() == ()  # the Preempt is over either way


def test_a_deallocated_vm_is_known_after_a_restart_and_started_again_is_evicted_again() -> None:
    p = planner()
    preempt(p, "dealloc")
    again = Planner.from_dict(json.loads(json.dumps(p.to_dict())), random.Random(4))
    assert again.stopped_vms() == ["dealloc"] and again.vm_started("dealloc")
    assert preempt(again, "dealloc", T + 5) == "stop"  # the policy survived the restart
    assert again.stopped_vms() == ["dealloc"]


def test_healing_restores_a_vm_whose_preempt_only_deallocates_it() -> None:
    p = planner()
    for vm in ("dealloc", "delete"):
        p.add_event(vm, "n1", "", "preempt", T, notice_s=0)
    p.tick(T)  # both Started, their effects under way when n1 fails
    moves = p.node_failed("n1", ["n2"], T + 1)
    assert "dealloc" in moves and "delete" not in moves  # being deleted anyway: not restored
    assert p.node_of("dealloc") == "n2" and p.node_of("delete") is None


def test_other_clouds_ignore_the_azure_eviction_policy() -> None:
    assert preempt(planner("aws"), "dealloc") == "preempt"  # AWS's spot terminate (GCE has no preempt kind)
