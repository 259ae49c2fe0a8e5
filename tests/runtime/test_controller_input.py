"""The controller's inputs (pure: no namespaces): when the repository refuses the
actions of an input, the planner is put back, so it never holds what SQLite lacks; VMs'
approvals reach the planner through the durable inbox, even across a crash."""

from __future__ import annotations

import json

import pytest

from netsim.maintenance.errors import RepositoryError
from netsim.maintenance.repository import Repository
from netsim.model.topology import grid
from netsim.runtime.controller import Controller
from netsim.runtime.placement import Placement

T = 1_800_000_000.0


class Clock:
    """An invented timeline: the controller reads ``now`` from it."""

    def __init__(self, t: float = T) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeAgent:
    """A host agent that records what it is handed; the test reports for it."""

    def __init__(self, node: str, controller: Controller) -> None:
        self.node, self.controller, self.silent = node, controller, False
        self.handed: list[tuple[object, float]] = []
        self.tasks: set = set()

    def run(self, action, began: float) -> None:
        self.handed.append((action, began))

    def beat(self, now: float) -> None:
        if not self.silent:
            self.controller.heartbeat(self.node, now)

    def fail(self) -> None:
        self.silent = True

    def recover(self, now: float) -> None:
        self.silent = False
        self.beat(now)


def make_controller(tmp_path, clock: Clock, where: dict[str, str] | None = None) -> tuple[Controller, Placement]:
    """A real controller on ``tmp_path/events.db`` for grid("t", 3, 1) (vm1 on n1, vm2 on
    n2, vm3 on n3, unless ``where`` says otherwise), with a fake agent per node."""
    dc = grid("t", 3, 1)
    placement = Placement(where if where is not None else {v.name: v.node for v in dc.vms})
    c = Controller(dc, str(tmp_path / "events.db"), placement, clock=clock)
    for node in dc.nodes:
        c.attach(FakeAgent(node.name, c))
    return c, placement


def refuse(*args, **kwargs):
    raise RepositoryError("disk full (simulated)")


def test_a_refused_write_puts_the_planner_back_and_stores_nothing(tmp_path, monkeypatch):
    c, _ = make_controller(tmp_path, Clock())
    kept = c.add_event("vm1", "Reboot", 60, None)
    before = json.dumps(c.planner.to_dict(), sort_keys=True)
    stored = c.repo.all_events()
    monkeypatch.setattr(c.repo, "put_event", refuse)
    with pytest.raises(RepositoryError, match="simulated"):
        c.add_event("vm1", "Freeze", 30, None)
    assert json.dumps(c.planner.to_dict(), sort_keys=True) == before
    assert [e.event_id for e in c.planner.events()] == [kept]
    assert c.repo.all_events() == stored and c.planner.pop_actions() == []
    monkeypatch.undo()
    again = c.add_event("vm1", "Freeze", 30, None)  # and the next input works as if the refused one never came
    assert [e.event_id for e in c.repo.events("n1")] == [kept, again]


def test_an_approval_in_the_inbox_reaches_the_planner_after_a_crash(tmp_path):
    # The daemon answered the VM (the approval is in the inbox) and died before feeding it.
    clock = Clock()
    c, _ = make_controller(tmp_path, clock)
    event_id = c.add_event("vm1", "Reboot", 3600, 1)
    with Repository(str(tmp_path / "events.db")) as other:  # no hook: nobody feeds it
        assert other.view("n1").approve(event_id) is True
    assert c.repo.event("n1", event_id).status == "Scheduled" and c.repo.approvals() == [event_id]
    c.repo.close()
    again, _ = make_controller(tmp_path, clock)  # a new daemon on the same file
    again.feed_approvals()
    assert again.repo.event("n1", event_id).status == "Started"  # written by the planner's UpdateEvent
    assert again.planner.event(event_id).status == "Started" and again.repo.approvals() == []
    assert [a.event_id for a, _ in again.agents["n1"].handed] == [event_id]  # and the reboot handed over
    again.feed_approvals()  # drained: nothing more to do
    assert again.repo.approvals() == []


def test_a_refused_approval_stays_in_the_inbox(tmp_path, monkeypatch):
    c, _ = make_controller(tmp_path, Clock())
    event_id = c.add_event("vm1", "Reboot", 3600, None)
    c.repo.request_approval("n1", event_id, T)
    monkeypatch.setattr(c.repo, "put_event", refuse)
    with pytest.raises(RepositoryError):
        c.feed_approvals()
    assert c.planner.event(event_id).status == "Scheduled" and c.repo.approvals() == [event_id]
    monkeypatch.undo()
    c.feed_approvals()  # the next try takes it
    assert c.repo.event("n1", event_id).status == "Started" and c.repo.approvals() == []
