"""The controller's inputs (pure: no namespaces): when the repository refuses the
actions of an input, the planner is put back, so it never holds what SQLite lacks; VMs'
approvals reach the planner through the durable inbox, even across a crash."""

from __future__ import annotations

import json
import random

import pytest

from netsim.runtime.controller import Controller
from netsim.maintenance.errors import RepositoryError
from netsim.maintenance.planner import Planner
from netsim.maintenance.repository import Repository

T = 1_800_000_000.0


def _controller(tmp_path) -> Controller:
    # Only what input_guard() and drain() use; the real constructor reads the kernel.
    c = Controller.__new__(Controller)
    c.repo = Repository(str(tmp_path / "events.db"))
    c.planner = Planner(random.Random(7))
    c.planner.heartbeat("n1", T)
    c._saved_deadline = -1.0
    c._fed = []
    c.on_events_changed = None
    c.tasks = set()
    return c


def test_a_refused_write_puts_the_planner_back_and_stores_nothing(tmp_path, monkeypatch):
    c = _controller(tmp_path)
    with c.input_guard():
        kept = c.planner.add_event("vm1", "n1", "web", "reboot", T, notice_s=60)
        c.drain()
    before = json.dumps(c.planner.to_dict(), sort_keys=True)
    stored = c.repo.all_events()

    def refuse(*args, **kwargs):
        raise RepositoryError("disk full (simulated)")
    monkeypatch.setattr(c.repo, "put_event", refuse)
    with pytest.raises(RepositoryError, match="simulated"):
        with c.input_guard():
            c.planner.add_event("vm2", "n1", "web", "pause", T, notice_s=30)
            c.drain()
    assert json.dumps(c.planner.to_dict(), sort_keys=True) == before
    assert [e.event_id for e in c.planner.events()] == [kept]
    assert c.repo.all_events() == stored and c.planner.pop_actions() == []
    monkeypatch.undo()
    with c.input_guard():  # and the next input works as if the refused one never came
        again = c.planner.add_event("vm2", "n1", "web", "pause", T, notice_s=30)
        c.drain()
    assert [e.event_id for e in c.repo.events("n1")] == [kept, again]


def test_an_approval_in_the_inbox_reaches_the_planner_after_a_crash(tmp_path):
    # The daemon answered the VM (the approval is in the inbox) and died before feeding it.
    c = _controller(tmp_path)
    with c.input_guard():
        event_id = c.planner.add_event("vm1", "n1", "web", "reboot", T, notice_s=3600, duration_s=1)
        c.drain()
    assert c.repo.view("n1").approve(event_id) is True  # no hook: nobody fed it
    assert c.repo.event("n1", event_id).status == "Scheduled" and c.repo.approvals() == [event_id]
    c.repo.close()
    again = _controller(tmp_path)  # a new daemon on the same file
    again.planner = Planner.from_dict(again.repo.load_planner(), random.Random())
    again._spawn = lambda action, began: None  # no effects here: only who writes the status
    again.feed_approvals()
    assert again.repo.event("n1", event_id).status == "Started"  # written by the planner's UpdateEvent
    assert again.planner.event(event_id).status == "Started" and again.repo.approvals() == []
    again.feed_approvals()  # drained: nothing more to do
    assert again.repo.approvals() == []


def test_a_refused_approval_stays_in_the_inbox(tmp_path, monkeypatch):
    c = _controller(tmp_path)
    with c.input_guard():
        event_id = c.planner.add_event("vm1", "n1", "web", "reboot", T, notice_s=3600)
        c.drain()
    c.repo.request_approval("n1", event_id, T)

    def refuse(*args, **kwargs):
        raise RepositoryError("disk full (simulated)")
    monkeypatch.setattr(c.repo, "put_event", refuse)
    with pytest.raises(RepositoryError):
        c.feed_approvals()
    assert c.planner.event(event_id).status == "Scheduled" and c.repo.approvals() == [event_id]
    monkeypatch.undo()
    c._spawn = lambda action, began: None
    c.feed_approvals()  # the next try takes it
    assert c.repo.event("n1", event_id).status == "Started" and c.repo.approvals() == []
