"""The durable event repository: round trips, incarnations, crash safety, the EventView."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace

import pytest

from netsim_imds.events import Event, EventView

from netsim.maintenance.actions import ApplyEffect, FileEvent, RemoveEvent, UpdateEvent
from netsim.maintenance.errors import RepositoryError
from netsim.maintenance.repository import NodeEventView, Repository

T = 1_442_299_371.25  # a NotBefore with a fraction: REAL must keep it exactly


def ev(event_id: str = "e1", **kw) -> Event:
    """A Reboot of vm1 and vm2 in set ``web`` (fields overridable)."""
    fields = dict(kind="reboot", resources=("vm1", "vm2"), not_before=T + 900, created=T,
                  description="Host server is undergoing maintenance.", duration_s=60, avset="web")
    fields.update(kw)
    return Event(event_id, **fields)


def test_events_round_trip_with_every_field(repo: Repository) -> None:
    odd = ev("e2", kind="pause", resources=("vm3",), status="Started", description="Pause ✓ \"quoted\"",
             source="User", duration_s=0, avset="")
    repo.put_event("n1", ev())
    repo.put_event("n1", odd)
    assert repo.events("n1") == (ev(), odd)
    assert repo.event("n1", "e2") == odd and repo.event("n1", "nope") is None
    assert repo.events("n2") == ()
    # Replacing a copy keeps its place in the filing order.
    repo.put_event("n1", ev(status="Started"))
    assert [e.event_id for e in repo.events("n1")] == ["e1", "e2"]
    assert repo.all_events() == {"n1": (ev(status="Started"), odd)}
    assert repo.nodes_holding("e1") == ["n1"]


def test_the_incarnation_rises_on_every_change_of_what_a_node_shows(repo: Repository) -> None:
    assert repo.incarnation("n1") == 1  # Azure's sample starts with incarnation 1 and no events
    assert repo.put_event("n1", ev()) is True
    assert repo.incarnation("n1") == 2
    assert repo.put_event("n1", ev()) is False  # same content: same incarnation
    assert repo.incarnation("n1") == 2
    repo.put_event("n1", ev(status="Started"))
    assert repo.incarnation("n1") == 3
    assert repo.remove_event("n1", "e1") is True
    assert repo.incarnation("n1") == 4
    assert repo.remove_event("n1", "e1") is False
    assert repo.incarnation("n1") == 4
    assert repo.incarnation("n2") == 1


def test_an_approval_is_an_input_in_the_inbox_not_a_status_write(repo: Repository) -> None:
    # One writer of status: the view files the VM's approval in the inbox; only the
    # planner's UpdateEvent (applied by the controller) makes the event Started.
    repo.put_event("n1", ev())
    repo.put_event("n2", ev())
    assert repo.request_approval("n1", "e1", T) is True
    assert repo.request_approval("n2", "e1", T) is False  # already waiting
    assert repo.approvals() == ["e1"]
    assert [repo.event(n, "e1").status for n in ("n1", "n2")] == ["Scheduled", "Scheduled"]
    assert [repo.incarnation(n) for n in ("n1", "n2")] == [2, 2]
    with repo.transaction():
        repo.apply(UpdateEvent("n1", ev(status="Started")))
        repo.clear_approvals(["e1"])
    assert repo.approvals() == [] and repo.event("n1", "e1").status == "Started"


def test_the_inbox_survives_a_reopen(tmp_path) -> None:
    path = str(tmp_path / "r.db")
    with Repository(path) as repo:
        repo.put_event("n1", ev())
        repo.view("n1").approve("e1")
    with Repository(path) as again:  # as a daemon started after SIGKILL finds it
        assert again.approvals() == ["e1"]


def test_history_keeps_ended_events_newest_last_and_bounded(repo: Repository, monkeypatch) -> None:
    import netsim.maintenance.repository as repository
    monkeypatch.setattr(repository, "HISTORY_LIMIT", 2)
    for i in range(3):
        assert repo.end_event(ev(f"h{i}", status="Completed", ended=T + i)) is True
    assert repo.end_event(ev("h2", status="Completed", ended=T + 2)) is False  # once
    assert [(e.event_id, e.status, e.ended) for e in repo.history()] == [("h1", "Completed", T + 1),
                                                                         ("h2", "Completed", T + 2)]
    with pytest.raises(RepositoryError, match="only an event that ended"):
        repo.end_event(ev("live"))
    assert [e.event_id for e in repo.view("n7").history_for("vm1", "web")] == ["h1", "h2"]
    assert repo.view("n7").history_for("vm8", "") == ()


def test_node_event_view_is_the_metadata_servers_event_view(repo: Repository) -> None:
    approved: list[Event] = []
    view = repo.view("n1", on_approve=approved.append)
    assert isinstance(view, EventView)
    assert view.document_incarnation == 1 and view.events_for("vm1", "web") == ()
    repo.put_event("n1", ev())
    repo.put_event("n1", ev("solo", resources=("vm9",), avset=""))
    assert view.document_incarnation == 3
    assert [e.event_id for e in view.events_for("vm1", "web")] == ["e1"]
    assert [e.event_id for e in view.events_for("vm3", "web")] == ["e1"]  # broadcast to the set
    assert view.events_for("vm3", "") == ()
    assert [e.event_id for e in view.events_for("vm9", "")] == ["solo"]
    assert view.approve("e1") is True
    assert view.approve("e1") is True  # already in the inbox: still fine, no second callback
    assert [(e.event_id, e.status) for e in approved] == [("e1", "Scheduled")]
    assert view.document_incarnation == 3 and repo.approvals() == ["e1"]  # the view writes no status
    repo.put_event("n1", ev(status="Started"))
    assert view.approve("e1") is True  # Started: fine
    assert view.approve("nope") is False
    assert repo.view("n2").approve("e1") is False  # n2 does not show it


def test_the_repository_hook_is_the_default(tmp_path) -> None:
    approved: list[str] = []
    with Repository(str(tmp_path / "r.db"), on_approve=lambda e: approved.append(e.event_id)) as repo:
        repo.put_event("n1", ev())
        assert NodeEventView(repo, "n1").approve("e1") is True
    assert approved == ["e1"]


def test_a_failed_transaction_leaves_the_previous_state(repo: Repository) -> None:
    repo.put_event("n1", ev())
    with pytest.raises(RuntimeError):
        with repo.transaction():
            repo.put_event("n1", ev(status="Started"))
            repo.put_event("n1", ev("e2"))
            repo.remove_event("n2", "e1")
            assert len(repo.events("n1")) == 2  # visible inside the transaction (and cached)...
            raise RuntimeError("the power went out")
    assert repo.events("n1") == (ev(),)  # ...and gone with it
    assert repo.incarnation("n1") == 2


def test_nested_transactions_commit_once(repo: Repository) -> None:
    with repo.transaction():
        repo.put_event("n1", ev())
        with repo.transaction():
            repo.save_planner({"x": 1})
    assert repo.events("n1") == (ev(),) and repo.load_planner() == {"x": 1}


_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from netsim_imds.events import Event
    from netsim.maintenance.repository import Repository
    repo = Repository({path!r})
    e = Event("late", "reboot", ("vm1",), 1.0, 0.0)
    if {commit}:
        repo.put_event("n1", e)
    else:
        with repo.transaction():
            repo.put_event("n1", e)
            repo.save_planner({{"torn": True}})
            os.kill(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("commit", [False, True], ids=["killed-mid-write", "killed-after-commit"])
def test_sigkill_loses_only_the_uncommitted_write(tmp_path, commit: bool) -> None:
    path = str(tmp_path / "events.db")
    with Repository(path) as repo:
        repo.put_event("n1", ev())
        repo.save_planner({"version": "before"})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(root=root, path=path, commit=commit)],
                          capture_output=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with Repository(path) as repo:
        assert [e.event_id for e in repo.events("n1")] == (["e1", "late"] if commit else ["e1"])
        assert repo.incarnation("n1") == (3 if commit else 2)
        assert repo.load_planner() == {"version": "before"}


def test_the_ledger_applies_each_key_once(repo: Repository) -> None:
    file = FileEvent("n1", ev())
    assert repo.apply(file, at=1.0) is True
    assert repo.apply(file, at=2.0) is False
    assert repo.incarnation("n1") == 2
    assert repo.apply(UpdateEvent("n1", ev(status="Started"))) is True
    assert repo.apply(RemoveEvent("n1", "e1")) is True and repo.events("n1") == ()
    assert repo.ledger_state(file.key) == "done" and repo.applied(file.key)
    effect = ApplyEffect("e1", "vm1", "n1", "reboot", 60)
    with pytest.raises(RepositoryError, match="begin"):
        repo.apply(effect)
    assert repo.begin(effect.key, at=3.0) is True
    assert repo.begin(effect.key, at=3.0) is False
    assert repo.begun_keys() == [effect.key] and not repo.applied(effect.key)
    repo.finish(effect.key, at=4.0)
    assert repo.begun_keys() == [] and repo.applied(effect.key)
    assert repo.prune_ledger(before=1.5) == 1
    assert not repo.applied(file.key) and repo.applied(effect.key)


def test_the_planner_state_is_saved_and_replaced(repo: Repository) -> None:
    assert repo.load_planner() is None
    repo.save_planner({"version": 1, "a": [1.5, None]})
    repo.save_planner({"version": 1, "a": [2]})
    assert repo.load_planner() == {"version": 1, "a": [2]}


def test_reads_see_writes_of_another_process(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    with Repository(path) as reader, Repository(path) as writer:
        view = reader.view("n1")
        assert view.events_for("vm1", "web") == ()  # now cached
        writer.put_event("n1", ev())
        assert [e.event_id for e in view.events_for("vm1", "web")] == ["e1"]
        assert view.document_incarnation == 2


def test_reads_are_cheap(repo: Repository) -> None:
    for i in range(20):
        repo.put_event("n1", ev(f"e{i}", resources=(f"vm{i}",)))
    view = repo.view("n1")
    start = time.perf_counter()
    for _ in range(5000):
        view.document_incarnation
        view.events_for("vm3", "")
    per_request = (time.perf_counter() - start) / 5000
    assert per_request < 200e-6, f"{per_request * 1e6:.0f} µs per request"


def test_threads_share_one_repository(repo: Repository) -> None:
    errors: list[BaseException] = []

    def write(node: str) -> None:
        try:
            for i in range(50):
                repo.put_event(node, ev(f"e{i}"))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def read() -> None:
        try:
            for _ in range(200):
                repo.view("n1").events_for("vm1", "web")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in ("n1", "n2")] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [len(repo.events(n)) for n in ("n1", "n2")] == [50, 50]
    assert repo.incarnation("n1") == 51


def test_a_file_of_another_schema_is_refused(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    Repository(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(RepositoryError, match="schema version 99"):
        Repository(path)


def test_an_unusable_path_says_what_to_do(tmp_path) -> None:
    with pytest.raises(RepositoryError, match="state folder"):
        Repository(str(tmp_path / "missing" / "events.db"))


def test_the_file_is_in_wal_mode(repo: Repository, tmp_path) -> None:
    db = sqlite3.connect(repo.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_the_metadata_api_serves_straight_from_the_repository(repo: Repository) -> None:
    from netsim_imds.azure.api import AzureConfig, AzureFlavor
    from netsim_imds.http import RequestParser
    from netsim_imds.identity import VmIdentity

    def call(method: str, body: bytes = b"") -> tuple[int, object]:
        parser = RequestParser()
        parser.feed((f"{method} /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: x\r\n"
                     f"Metadata: true\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        vm = VmIdentity("vm3", vm_id="id", node="n1", update_domain=1, fault_domain=0, availability_set="web",
                        mac="02:00:00:00:00:03", link_local="169.254.10.3", address="198.18.1.7", prefix=24)
        resp = AzureFlavor(AzureConfig(rate_limit=None)).handle(parser.next_request(), vm, view, T)
        return resp.status, (json.loads(resp.body) if resp.body else None)

    approved: list[Event] = []

    def planner_writes_started(event: Event) -> None:  # what the controller does with the inbox
        approved.append(event)
        repo.apply(UpdateEvent("n1", replace(event, status="Started")))
        repo.clear_approvals([event.event_id])
    view = repo.view("n1", on_approve=planner_writes_started)
    assert call("GET") == (200, {"DocumentIncarnation": 1, "Events": []})
    repo.put_event("n1", ev())
    status, doc = call("GET")
    assert (status, doc["DocumentIncarnation"], doc["Events"][0]["EventStatus"]) == (200, 2, "Scheduled")
    assert call("POST", b'{"StartRequests": [{"EventId": "e1"}]}')[0] == 200
    status, doc = call("GET")
    assert (doc["DocumentIncarnation"], doc["Events"][0]["EventStatus"], doc["Events"][0]["NotBefore"]) == (3, "Started", "")
    assert [e.event_id for e in approved] == ["e1"]


def test_a_file_cut_short_inside_a_page_is_reported_corrupt_whatever_page_it_cut(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    with Repository(path) as repo:
        repo.put_event("n1", ev())
    with Repository(path) as repo:  # closed cleanly: the log is checkpointed, the file whole
        assert [e.event_id for e in repo.events("n1")] == ["e1"]
    size = os.path.getsize(path)
    assert size % 4096 == 0
    os.truncate(path, size - 1024)
    with pytest.raises(RepositoryError, match=r"is corrupt .*not a whole number of 4096-byte pages"):
        Repository(path)
