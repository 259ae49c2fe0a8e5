"""How the repository's readers stay fresh: per read (another process may write) or
from its own writes (``sole_writer``: the daemon, whose metadata server reads per request)."""

from __future__ import annotations

from netsim_imds.events import Event

from netsim.maintenance.repository import Repository

T = 1_442_299_371.0


def ev(event_id: str) -> Event:
    return Event(event_id, kind="reboot", resources=("vm1",), not_before=T + 900, created=T, duration_s=60)


def _statements(repo: Repository) -> list[str]:
    seen: list[str] = []
    repo._db.set_trace_callback(seen.append)
    return seen


def test_a_shared_reader_sees_another_connections_commit(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    with Repository(path) as reader, Repository(path) as writer:
        view = reader.view("n1")
        assert view.events_for("vm1") == () and view.document_incarnation == 1
        writer.put_event("n1", ev("e1"))
        assert [e.event_id for e in view.events_for("vm1")] == ["e1"]
        assert view.document_incarnation == 2


def test_a_sole_writer_reads_from_its_cache_and_its_own_writes_refresh_it(tmp_path) -> None:
    with Repository(str(tmp_path / "events.db"), sole_writer=True) as repo:
        view = repo.view("n1")
        assert view.events_for("vm1") == ()
        seen = _statements(repo)
        for _ in range(100):
            assert view.events_for("vm1") == () and view.document_incarnation == 1
        assert seen == []  # no PRAGMA data_version, no SELECT: the metadata server's hot path
        repo.put_event("n1", ev("e1"))
        assert [e.event_id for e in view.events_for("vm1")] == ["e1"] and view.document_incarnation == 2
        repo.remove_event("n1", "e1")
        assert view.events_for("vm1") == () and view.document_incarnation == 3


def test_a_sole_writer_forgets_a_rolled_back_write(tmp_path) -> None:
    with Repository(str(tmp_path / "events.db"), sole_writer=True) as repo:
        try:
            with repo.transaction():
                repo.put_event("n1", ev("e1"))
                assert [e.event_id for e in repo.events("n1")] == ["e1"]  # cached inside the transaction
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        assert repo.events("n1") == () and repo.incarnation("n1") == 1


def test_a_shared_reader_asks_sqlite_on_each_read(tmp_path) -> None:
    with Repository(str(tmp_path / "events.db")) as repo:
        repo.events("n1")
        seen = _statements(repo)
        repo.events("n1")
        assert any("data_version" in s for s in seen)
