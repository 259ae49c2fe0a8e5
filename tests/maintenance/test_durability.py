"""Save and restore the planner at every cut point: nothing lost, nothing applied twice.

The driver's loop is: feed an input, save ``to_dict()`` (which holds the actions not yet
popped), pop the actions and apply each one whose key the ledger has not seen. A crash
can hit (a) after the input but before the save: the input is lost and redelivered
after the restart (a tick fires again, a VM reports again); (b) after the save, with
``j`` of the actions applied. Either way the applied sequence must equal the run
without a crash, action for action, event id for event id.
"""

from __future__ import annotations

import json
import random
from typing import Callable

import pytest

from netsim.maintenance.actions import ApplyEffect, Heal, action_from_dict, action_to_dict
from netsim.maintenance.errors import MaintenanceError
from netsim.maintenance.planner import Planner
from netsim.maintenance.repository import Repository

from tests.maintenance.support import WEB, Ledger, no_duplicate_keys, shown

SEED = 11
Step = tuple[str, Callable[[Planner], object]]


def _walk_event(p: Planner) -> str:
    return p.walks()[-1].event_id


def _event_of(p: Planner, kind: str) -> str:
    return next(e.event_id for e in p.events() if e.kind == kind)


WALK: list[Step] = [
    ("start", lambda p: p.start_walk("web", WEB, 900, 60, 1000.0)),
    ("tick-early", lambda p: p.tick(1500.0)),
    ("tick-not-before", lambda p: p.tick(1900.0)),
    ("back-vm1", lambda p: p.vm_back("vm1", 1960.0)),
    ("back-vm1-again", lambda p: p.vm_back("vm1", 1960.5)),
    ("back-vm2", lambda p: p.vm_back("vm2", 1961.0)),
    ("approve", lambda p: p.approve(_walk_event(p), 2000.0)),
    ("approve-again", lambda p: p.approve(_walk_event(p), 2001.0)),
    ("back-vm3", lambda p: p.vm_back("vm3", 2060.0)),
    ("back-vm4", lambda p: p.vm_back("vm4", 2061.0)),
    ("tick-ud2", lambda p: p.tick(2961.0)),
    ("back-vm5", lambda p: p.vm_back("vm5", 3021.0)),
]

MIXED: list[Step] = [
    ("nodes", lambda p: [p.heartbeat(n, 0.0) for n in ("n1", "n2", "n3")]),
    ("vms", lambda p: [p.add_vm(v, n, s) for v, n, s in
                       (("a", "n1", "web"), ("b", "n1", "web"), ("c", "n2", "web"), ("d", "n3", ""))]),
    ("freeze", lambda p: p.add_event("a", "n1", "web", "pause", 0.0, notice_s=1)),
    ("preempt", lambda p: p.add_event("d", "n3", "", "preempt", 0.0)),
    ("redeploy", lambda p: p.add_event("c", "n2", "web", "redeploy", 0.0, notice_s=2)),
    ("heartbeats", lambda p: [p.heartbeat(n, 1.0) for n in ("n1", "n2", "n3")]),
    ("tick-freeze", lambda p: p.tick(1.0)),
    ("thawed", lambda p: p.effect_done(_event_of(p, "pause"), "a", 1.5)),
    ("heartbeats-2", lambda p: [p.heartbeat(n, 2.5) for n in ("n2", "n3")]),
    ("tick-redeploy", lambda p: p.tick(2.0)),
    ("moved", lambda p: p.effect_done(_event_of(p, "redeploy"), "c", 3.0)),
    ("tick-n1-fails", lambda p: p.tick(4.0)),
    ("back-a", lambda p: p.vm_back("a", 5.0)),
    ("back-b", lambda p: p.vm_back("b", 5.0)),
    ("tick-preempt", lambda p: p.tick(30.0)),
    ("evicted", lambda p: p.effect_done(_event_of(p, "preempt"), "d", 31.0)),
    ("walk", lambda p: p.start_walk("web", [(v, p.node_of(v), i) for i, v in enumerate("abc")], 0, 1, 32.0)),
    ("tick-ud0", lambda p: p.tick(32.0)),
    ("back-a-2", lambda p: p.vm_back("a", 33.0)),
    ("tick-ud1", lambda p: p.tick(33.0)),
    ("back-b-2", lambda p: p.vm_back("b", 34.0)),
    ("tick-ud2", lambda p: p.tick(34.0)),
    ("back-c-2", lambda p: p.vm_back("c", 35.0)),
    ("n1-speaks", lambda p: p.heartbeat("n1", 36.0)),
]


def reference(script: list[Step]) -> tuple[list, list, dict]:
    """The run without a crash: (every action popped, actions applied, final state)."""
    planner, ledger, popped = Planner(random.Random(SEED)), Ledger(), []
    for _, step in script:
        step(planner)
        actions = planner.pop_actions()
        popped += actions
        ledger.apply(actions)
    return popped, ledger.applied, planner.to_dict()


def with_crash(script: list[Step], at: int, applied_before_crash: int | None) -> tuple[list, dict]:
    """The run with one crash at input ``at``: before the save (None) or after ``applied_before_crash`` actions."""
    planner, ledger = Planner(random.Random(SEED)), Ledger()
    saved = json.dumps(planner.to_dict())
    for k, (_, step) in enumerate(script):
        step(planner)
        if k == at and applied_before_crash is None:
            planner = Planner.from_dict(json.loads(saved))  # the input died with the process
            ledger.apply(planner.pop_actions())
            step(planner)                                   # ... and is delivered again
        saved = json.dumps(planner.to_dict())
        actions = planner.pop_actions()
        if k == at and applied_before_crash is not None:
            ledger.apply(actions[:applied_before_crash])
            planner = Planner.from_dict(json.loads(saved))  # restart: the saved queue comes back
            actions = planner.pop_actions()
        ledger.apply(actions)
    return ledger.applied, planner.to_dict()


def cut_points(script: list[Step]) -> list[tuple[int, int | None]]:
    """Every (input, applied-before-crash) pair, including 'before the save'."""
    planner, points = Planner(random.Random(SEED)), []
    for k, (_, step) in enumerate(script):
        step(planner)
        n = len(planner.pop_actions())
        points += [(k, None)] + [(k, j) for j in range(n + 1)]
    return points


@pytest.mark.parametrize("script", [WALK, MIXED], ids=["walk", "mixed"])
def test_every_cut_point_yields_the_same_actions_once(script: list[Step]) -> None:
    popped, applied, final = reference(script)
    assert no_duplicate_keys(popped), "the planner itself must never reuse a key"
    assert applied == popped
    points = cut_points(script)
    assert len(points) > 2 * len(script)
    for at, j in points:
        got, state = with_crash(script, at, j)
        assert got == applied, f"crash at {script[at][0]!r} after {j} applied"
        assert state == final, f"crash at {script[at][0]!r} after {j} applied"


def test_the_reference_runs_do_what_they_claim() -> None:
    _, applied, final = reference(WALK)
    assert [a.vm for a in applied if isinstance(a, ApplyEffect)] == ["vm1", "vm2", "vm3", "vm4", "vm5"]
    assert shown(applied) == {}
    assert final["walks"][0]["state"] == "done"
    _, applied, final = reference(MIXED)
    assert [(a.vm, a.kind) for a in applied if isinstance(a, ApplyEffect)][:3] == [
        ("a", "pause"), ("c", "redeploy"), ("d", "preempt")]
    assert [(h.vm, h.from_node) for h in applied if isinstance(h, Heal)] == [("a", "n1"), ("b", "n1")]
    assert shown(applied) == {}
    assert final["walks"][0]["state"] == "done"


def test_state_is_json_and_round_trips_exactly() -> None:
    planner = Planner(random.Random(SEED))
    for _, step in MIXED[:12]:
        step(planner)
    data = planner.to_dict()
    assert json.loads(json.dumps(data)) == data
    clone = Planner.from_dict(json.loads(json.dumps(data)))
    assert clone.to_dict() == data
    assert clone.pop_actions() == planner.pop_actions()
    assert clone.next_deadline() == planner.next_deadline()
    assert clone.events() == planner.events()
    # The restored generator continues the same sequence of ids.
    assert clone.add_event("z", "n2", "", "reboot", 9.0) == planner.add_event("z", "n2", "", "reboot", 9.0)


def test_actions_round_trip_through_json() -> None:
    _, applied, _ = reference(MIXED)
    for action in applied:
        assert action_from_dict(json.loads(json.dumps(action_to_dict(action)))) == action
    with pytest.raises(MaintenanceError, match="another netsim version"):
        action_from_dict({"action": "Explode"})


def test_a_state_of_another_version_is_refused() -> None:
    data = Planner(random.Random(1)).to_dict()
    data["version"] = 99
    with pytest.raises(MaintenanceError, match="version 99"):
        Planner.from_dict(data)


def test_the_driver_loop_over_the_real_repository_survives_restarts(tmp_path) -> None:
    """The pattern the daemon follows, with the repository as ledger and a restart at every input."""
    _, expected, final = reference(WALK)
    path = str(tmp_path / "events.db")
    effects_done: list[str] = []
    for k, (_, step) in enumerate(WALK):
        repo = Repository(path)
        saved = repo.load_planner()
        planner = Planner.from_dict(saved) if saved else Planner(random.Random(SEED))
        for action in planner.pop_actions():
            _apply(repo, action, effects_done)  # what the last process left unapplied
        step(planner)
        repo.save_planner(planner.to_dict())
        for action in planner.pop_actions():
            _apply(repo, action, effects_done)
        repo.close()
    repo = Repository(path)
    saved = repo.load_planner()
    # The saved state still holds the last input's actions (saved before they were applied).
    assert {k: v for k, v in saved.items() if k != "actions"} == {k: v for k, v in final.items() if k != "actions"}
    assert all(repo.applied(action_from_dict(a).key) for a in saved["actions"])
    assert effects_done == [a.key for a in expected if isinstance(a, ApplyEffect)]
    assert repo.all_events() == {} and repo.begun_keys() == []
    assert all(repo.applied(a.key) for a in expected)
    # n1 showed: UD0 filed, started, removed; UD1 filed, started, removed; UD2 filed, started, removed.
    assert repo.incarnation("n1") == 1 + 9
    repo.close()


def _apply(repo: Repository, action, effects_done: list[str]) -> None:
    if isinstance(action, (ApplyEffect, Heal)):
        if repo.applied(action.key):
            return
        repo.begin(action.key)
        effects_done.append(action.key)  # the real agent reboots the VM here
        repo.finish(action.key)
    else:
        repo.apply(action)
