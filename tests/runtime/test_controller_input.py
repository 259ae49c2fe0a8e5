"""The controller's input guard (pure: no namespaces): when the repository refuses the
actions of an input, the planner is put back, so it never holds what SQLite lacks."""

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
    c.tasks = set()
    return c


def test_a_refused_write_puts_the_planner_back_and_stores_nothing(tmp_path, monkeypatch):
    c = _controller(tmp_path)
    with c.input_guard():
        kept = c.planner.add_event("vm1", "n1", "web", "Reboot", T, notice_s=60)
        c.drain()
    before = json.dumps(c.planner.to_dict(), sort_keys=True)
    stored = c.repo.all_events()

    def refuse(*args, **kwargs):
        raise RepositoryError("disk full (simulated)")
    monkeypatch.setattr(c.repo, "put_event", refuse)
    with pytest.raises(RepositoryError, match="simulated"):
        with c.input_guard():
            c.planner.add_event("vm2", "n1", "web", "Freeze", T, notice_s=30)
            c.drain()
    assert json.dumps(c.planner.to_dict(), sort_keys=True) == before
    assert [e.event_id for e in c.planner.events()] == [kept]
    assert c.repo.all_events() == stored and c.planner.pop_actions() == []
    monkeypatch.undo()
    with c.input_guard():  # and the next input works as if the refused one never came
        again = c.planner.add_event("vm2", "n1", "web", "Freeze", T, notice_s=30)
        c.drain()
    assert [e.event_id for e in c.repo.events("n1")] == [kept, again]
