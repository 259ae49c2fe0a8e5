"""Service healing: missed heartbeats, immediate Started Reboot, VMs spread to healthy nodes."""

from __future__ import annotations

import random

import pytest

from netsim.maintenance.actions import Heal
from netsim.maintenance.errors import MaintenanceError
from netsim.maintenance.planner import Planner
from netsim_imds.azure.events import EMERGENCY

from tests.maintenance.support import effects, kinds, shown

T = 100.0


def fleet(planner: Planner, nodes=("n1", "n2", "n3")) -> None:
    """Watch ``nodes`` from T; n1 holds a, b, c, d of ``web``; n2 holds e."""
    for n in nodes:
        planner.heartbeat(n, T)
    for vm in "abcd":
        planner.add_vm(vm, "n1", "web")
    planner.add_vm("e", "n2", "web")


def test_a_silent_node_is_healed_with_an_immediate_started_reboot(planner: Planner) -> None:
    fleet(planner)
    assert planner.next_deadline() == T + 3.0  # default timeout
    planner.heartbeat("n2", T + 2)
    planner.heartbeat("n3", T + 2)
    planner.tick(T + 2.999)
    assert planner.pop_actions() == [] and planner.failed_nodes() == ()
    assert planner.next_deadline() == T + 3.0
    planner.tick(T + 3.0)
    actions = planner.pop_actions()
    heals = [a for a in actions if isinstance(a, Heal)]
    # Least-loaded first, ties in node order: n3 (0 VMs), n2 (1), n3, n2.
    assert [(h.vm, h.from_node, h.to_node) for h in heals] == [
        ("a", "n1", "n3"), ("b", "n1", "n2"), ("c", "n1", "n3"), ("d", "n1", "n2")]
    filed = kinds(a for a in actions if not isinstance(a, Heal))
    assert filed == [("file", "n3", "Started"), ("file", "n2", "Started")]  # no Scheduled phase at all
    event = planner.event(heals[0].event_id)
    assert (event.kind, event.status, event.resources) == ("reboot", "Started", ("a", "b", "c", "d"))
    assert (event.not_before, event.created, event.description, event.avset) == (T + 3, T + 3, EMERGENCY, "web")
    assert planner.failed_nodes() == ("n1",)
    assert [planner.node_of(v) for v in "abcde"] == ["n3", "n2", "n3", "n2", "n2"]
    assert planner.next_deadline() == T + 5.0  # n2 and n3 are still watched
    # The heal event disappears once every VM runs again.
    for vm in "abcd":
        planner.vm_back(vm, T + 10)
    assert sorted(kinds(planner.pop_actions())) == [("remove", "n2"), ("remove", "n3")]
    assert planner.events() == ()


def test_one_heal_event_per_availability_set(planner: Planner) -> None:
    fleet(planner, ("n1", "n2"))
    planner.add_vm("solo", "n1")
    planner.add_vm("db1", "n1", "db")
    moves = planner.node_failed("n1", ["n2"], T + 1)
    assert set(moves.values()) == {"n2"}
    groups = {e.avset: e.resources for e in planner.events()}
    assert groups == {"web": ("a", "b", "c", "d"), "": ("solo",), "db": ("db1",)}
    assert all(e.status == "Started" for e in planner.events())


def test_a_heartbeat_timeout_is_configurable(rng: random.Random) -> None:
    planner = Planner(rng, heartbeat_timeout_s=10)
    fleet(planner)
    assert planner.next_deadline() == T + 10
    planner.heartbeat("n2", T + 9)
    planner.heartbeat("n3", T + 9)
    planner.tick(T + 9.5)
    assert planner.failed_nodes() == ()
    planner.tick(T + 10)
    assert planner.failed_nodes() == ("n1",)


def test_when_every_node_is_silent_the_watcher_stalled_not_the_fleet(planner: Planner) -> None:
    fleet(planner)
    planner.tick(T + 60)
    assert planner.failed_nodes() == () and planner.pop_actions() == []
    planner.grace(T + 60)  # e.g. after a daemon restart
    assert planner.next_deadline() == T + 63


def test_a_failed_node_that_speaks_again_is_healthy_and_empty(planner: Planner) -> None:
    fleet(planner)
    planner.node_failed("n1", ["n2", "n3"], T + 1)
    planner.heartbeat("n1", T + 2)
    assert planner.failed_nodes() == ()
    assert "n1" not in {planner.node_of(v) for v in "abcde"}
    planner.node_failed("n3", ["n1", "n2"], T + 3)  # its VMs may go back to n1
    assert planner.node_of("a") == "n1"


def test_no_healthy_node_is_an_error_and_changes_nothing(planner: Planner) -> None:
    fleet(planner, ("n1",))
    with pytest.raises(MaintenanceError, match="no healthy node"):
        planner.node_failed("n1", ["n1"], T)
    assert planner.failed_nodes() == () and planner.pop_actions() == []
    planner.node_failed("n3", [], T)  # an empty node needs nowhere to go
    assert planner.failed_nodes() == ("n3",)


def test_a_lone_node_has_no_heartbeat_deadline(planner: Planner) -> None:
    planner.heartbeat("n1", T)
    assert planner.next_deadline() is None


def test_events_of_healed_vms_follow_them(planner: Planner) -> None:
    fleet(planner)
    walk_id = planner.start_walk("web", [("a", "n1", 0), ("e", "n2", 1)], 900, 60, T)
    log = planner.pop_actions()
    walk_event = planner.walk_status(walk_id).event_id
    assert set(shown(log)) == {"n1", "n2"}
    planner.node_failed("n1", ["n2", "n3"], T + 5)
    log += planner.pop_actions()
    # The Scheduled walk event left dead n1 and reached n3, where vm a now runs.
    assert {n for n, evs in shown(log).items() if walk_event in evs} == {"n2", "n3"}
    planner.vm_back("a", T + 20)  # healed
    planner.tick(T + 900)
    (effect,) = effects(planner.pop_actions())
    assert (effect.vm, effect.node) == ("a", "n3")  # the walk still reboots it, where it is now


def test_a_vm_being_deleted_is_not_restored(planner: Planner) -> None:
    fleet(planner)
    event_id = planner.add_event("a", "n1", "web", "terminate", T, notice_s=0)
    planner.tick(T)
    planner.node_failed("n1", ["n2", "n3"], T + 1)
    assert planner.node_of("a") is None
    assert planner.event(event_id) is None
    assert "a" not in {h.vm for h in planner.pop_actions() if isinstance(h, Heal)}


def test_a_vm_rebooting_in_a_walk_is_healed_and_one_boot_ends_both(planner: Planner) -> None:
    fleet(planner)
    walk_id = planner.start_walk("web", [("a", "n1", 0), ("e", "n2", 1)], 0, 60, T)
    planner.tick(T)
    planner.node_failed("n1", ["n2", "n3"], T + 1)
    assert len(planner.events()) == 2
    planner.vm_back("a", T + 30)
    assert planner.walk_status(walk_id).current_ud == 1
    # The heal event still waits for b, c and d; the walk went on to UD 1.
    assert [e.resources for e in planner.events()] == [("a", "b", "c", "d"), ("e",)]
