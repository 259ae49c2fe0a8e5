"""The repository's history is read from a cache that stays fresh as its events' cache does:
another connection's commit, its own end_event, a rolled-back transaction."""

from __future__ import annotations

import pytest

from netsim_imds.events import Event, Status

from netsim.maintenance.repository import Repository

T = 1_442_299_371.0


def ended(event_id: str) -> Event:
    return Event(event_id, kind="reboot", resources=("vm1",), not_before=T, created=T, status=Status.COMPLETED,
                 ended=T + 60)


def ids(view) -> list[str]:
    return [e.event_id for e in view.history_for("vm1")]


def test_history_follows_another_connections_commit_and_its_own_writes(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    with Repository(path) as reader, Repository(path) as writer:
        view = reader.view("n1")
        assert ids(view) == []
        writer.end_event(ended("e1"))
        assert ids(view) == ["e1"]
        reader.end_event(ended("e2"))
        assert ids(view) == ["e1", "e2"]


def test_a_sole_writer_serves_history_without_sql_and_a_rollback_drops_the_cache(tmp_path) -> None:
    with Repository(str(tmp_path / "events.db"), sole_writer=True) as repo:
        view = repo.view("n1")
        repo.end_event(ended("e1"))
        assert ids(view) == ["e1"]
        seen: list[str] = []
        repo._db.set_trace_callback(seen.append)
        for _ in range(50):
            assert ids(view) == ["e1"]
        assert seen == []  # the AWS flavor reads history on every meta-data request
        repo._db.set_trace_callback(None)
        with pytest.raises(RuntimeError):
            with repo.transaction():
                repo.end_event(ended("e2"))
                assert ids(view) == ["e1", "e2"]
                raise RuntimeError("refused")
        assert ids(view) == ["e1"]
