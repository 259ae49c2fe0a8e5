"""A drain's actions in a few statements (netsim.maintenance.batch) and the planner's
placement saved apart (netsim.maintenance.plannerrows): the same results as one at a time."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace

import pytest

from netsim.maintenance.actions import ApplyEffect, EndEvent, FileEvent, RemoveEvent, UpdateEvent, action_to_dict
from netsim.maintenance.errors import RepositoryError
from netsim.maintenance.planner import Planner
from netsim.maintenance.repository import Repository

from tests.maintenance.test_repository import T, ev  # the same events as the repository's own tests


def rows(path: str) -> dict:
    """Every table a drain writes, as SQLite holds it (the ledger without its times)."""
    db = sqlite3.connect(path)
    try:
        return {"events": db.execute("SELECT * FROM events ORDER BY node, rowid").fetchall(),
                "nodes": db.execute("SELECT * FROM nodes ORDER BY node").fetchall(),
                "applied": db.execute("SELECT key, state FROM applied ORDER BY key").fetchall(),
                "effects": db.execute("SELECT * FROM effect_actions ORDER BY key").fetchall(),
                "history": db.execute("SELECT event_id, status FROM history ORDER BY seq").fetchall()}
    finally:
        db.close()


def one_at_a_time(repo: Repository, actions: list, at: float) -> list:
    """The drain's loop before the batch: apply or begin each action, skipping done keys."""
    begun = []
    with repo.transaction():
        for action in actions:
            if repo.applied(action.key):
                continue
            if isinstance(action, (FileEvent, UpdateEvent, RemoveEvent, EndEvent)):
                repo.apply(action)
            elif repo.begin(action.key, at, action_to_dict(action)):
                begun.append(action)
    return begun


# A walk's life on three nodes, with the awkward cases: a key applied twice, an event
# removed then filed again on the same node (it goes last), an update to the same value.
E1, E2, E3 = ev("e1"), ev("e2", resources=("vm3",)), ev("e3", kind="pause")
STARTED = replace(E1, status="Started")
ENDED = replace(STARTED, status="Completed", ended=T + 1000)
SCRIPT = [
    [FileEvent("n1", E1), FileEvent("n2", E1), FileEvent("n3", E1), FileEvent("n1", E2)],
    [FileEvent("n1", E1), RemoveEvent("n1", "e1"), FileEvent("n1", E3), FileEvent("n1", E1, step="again"),
     UpdateEvent("n2", E1, step="same"), UpdateEvent("n3", STARTED), ApplyEffect("e1", "vm1", "n3", "reboot", 5)],
    [ApplyEffect("e1", "vm1", "n3", "reboot", 5), RemoveEvent("n2", "e1"), RemoveEvent("n3", "e1"),
     RemoveEvent("n2", "nothing"), EndEvent(ENDED)],
]


def test_a_batch_writes_what_one_action_at_a_time_writes(tmp_path) -> None:
    batch, single = Repository(str(tmp_path / "b.db")), Repository(str(tmp_path / "s.db"))
    for repo in (batch, single):
        for node in ("n1", "n2", "n3"):
            repo.events(node)  # cached: the batch writes through the cache as put_event does
    for actions in SCRIPT:
        changed: dict = {}
        got = batch.apply_all(actions, T, changed)
        want = one_at_a_time(single, actions, T)
        assert [a.key for a in got] == [a.key for a in want]
        for node in ("n1", "n2", "n3"):
            assert batch.events(node) == single.events(node), node
            assert batch.incarnation(node) == single.incarnation(node), node
        assert set(changed) <= {"n1", "n2", "n3"}
    assert rows(str(tmp_path / "b.db")) == rows(str(tmp_path / "s.db"))
    fresh = Repository(str(tmp_path / "b.db"))  # and read back from the file, not the cache
    assert [e.event_id for e in fresh.events("n1")] == ["e2", "e3", "e1"]  # re-filed: last
    assert fresh.incarnation("n1") == single.incarnation("n1")


def test_a_refused_action_leaves_nothing_of_the_batch(repo: Repository) -> None:
    repo.events("n1")
    bad = ev("bad", not_before=float("nan"))
    with pytest.raises(RepositoryError):
        repo.apply_all([FileEvent("n1", E1), FileEvent("n2", E1), FileEvent("n1", bad)], T, {})
    assert repo.events("n1") == () and repo.events("n2") == () and repo.incarnation("n1") == 1
    assert not repo.applied(FileEvent("n1", E1).key)
    assert repo.apply_all([FileEvent("n1", E1)], T, {}) == [] and repo.events("n1") == (E1,)


def test_the_placement_is_stored_apart_and_only_when_it_changed(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    planner = Planner(random.Random(7))
    for i in range(50):
        planner.add_vm(f"vm{i}", f"n{i % 5}", "web")
    with Repository(path, sole_writer=True) as repo:
        repo.save_planner(planner.to_dict())
        writes = []
        repo._db.set_trace_callback(writes.append)
        planner.heartbeat("n1", T)
        repo.save_planner(planner.to_dict())  # the placement did not change: one row written
        assert not [w for w in writes if w.startswith("INSERT INTO planner_parts")]
        planner.add_vm("vm0", "n4", "web")
        repo.save_planner(planner.to_dict())
        assert [w for w in writes if w.startswith("INSERT INTO planner_parts")]
        repo._db.set_trace_callback(None)
        with pytest.raises(RuntimeError), repo.transaction():
            planner.add_vm("vm1", "n4", "web")
            repo.save_planner(planner.to_dict())
            raise RuntimeError("rolled back: the part is written again next time")
        repo.save_planner(planner.to_dict())
    with Repository(path) as repo:
        assert Planner.from_dict(repo.load_planner()).to_dict() == planner.to_dict()
        assert repo.load_planner()["fleet"]["placement"][:2] == [["vm0", "n4", "web"], ["vm1", "n4", "web"]]
        repo._db.execute("DELETE FROM planner_parts")
        with pytest.raises(RepositoryError, match="corrupt"):
            repo.load_planner()
