"""The host agents' durable event repository: one SQLite file in the datacenter's state folder.

What it holds (schema in :data:`netsim.maintenance.schema.SCHEMA`):

- ``events``: the live events each node shows, every :class:`~netsim_imds.events.Event`
  field, in the order they were filed (rowid);
- ``history``: events that ended (Completed or Canceled), once per datacenter, the
  newest :data:`HISTORY_LIMIT` kept (flavors that show history read it);
- ``approvals``: the inbox of VMs' approvals (POST StartRequests) not yet fed to the
  planner; the planner alone writes an event's status, so an approval is an *input*,
  durable from the moment the VM is answered until the controller has drained it;
- ``nodes``: each node's ``incarnation``, the DocumentIncarnation of what it shows,
  raised by every change (file, status change, removal), 1 before the first;
- ``applied``: the exactly-once ledger of action keys (``begun`` then ``done``);
- ``effect_actions``: the action (JSON) behind each begun effect, so a restarted daemon
  can finish what a crash interrupted;
- ``planner``: the planner's saved state (:meth:`Planner.to_dict
  <netsim.maintenance.planner.Planner.to_dict>`) as JSON, its fleet's placement apart in
  ``planner_parts`` (:mod:`netsim.maintenance.plannerrows`); ``faults``: issue 13's
  (:mod:`netsim.maintenance.faultrows`). A drain's actions are written in a few statements
  (:mod:`netsim.maintenance.batch`).

Every write is one SQLite transaction (WAL mode): a crash mid-write leaves the state
before it. Readers are cheap: each node's events are cached until the next write. Writes
by another process are noticed through ``PRAGMA data_version`` (one query per read),
unless :attr:`Repository.sole_writer` says this process is the only writer (the daemon,
whose controller commits every change): then its own writes invalidate the cache and a
read costs a dict lookup (the metadata server reads on every request).

:class:`~netsim.maintenance.view.NodeEventView` serves one node's events to the
metadata server (it implements :class:`netsim_imds.events.EventView`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netsim_imds.events import Event

from netsim.maintenance.actions import REPOSITORY_ACTIONS, Action, EndEvent, FileEvent, RemoveEvent, UpdateEvent
from netsim.maintenance.batch import BatchWrites, Staged
from netsim.maintenance.errors import RepositoryError
from netsim.maintenance.faultrows import FaultRows
from netsim.maintenance.plannerrows import PlannerRows
from netsim.maintenance.schema import COLUMNS, SCHEMA, SCHEMA_VERSION, check_event, event_of, row_of
from netsim.maintenance.view import ApproveHook, NodeEventView

HISTORY_LIMIT = 1000
"""Ended events kept in ``history`` (the oldest are forgotten first)."""



class Repository(BatchWrites, FaultRows, PlannerRows):
    """The event repository of a datacenter, in the SQLite file ``path``.

    ``on_approve`` is the default approval hook of the :class:`NodeEventView` objects
    made by :meth:`view`. ``synchronous`` is SQLite's setting: ``NORMAL`` (the default)
    survives a killed process, ``FULL`` also a power cut. Safe to share between
    threads; one process should own writes (the daemon), others may read.

    ``sole_writer``: True when no other process writes the file while this one is open
    (the daemon's controller; the CLI goes through its control socket): reads then trust
    the cache, which this object's own writes keep right, instead of asking SQLite
    whether another connection committed. False (the default) is always correct.
    """

    def __init__(self, path: str, *, on_approve: ApproveHook | None = None, synchronous: str = "NORMAL",
                 sole_writer: bool = False) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise RepositoryError(f"synchronous={synchronous!r}: use NORMAL or FULL")
        self.path = path
        self.on_approve = on_approve
        self.sole_writer = sole_writer
        self._lock = threading.RLock()
        self._depth = 0
        self._cache: dict[str, tuple[int, tuple[Event, ...]]] = {}
        self._checked: tuple[Event | None, tuple] = (None, ())  # the last event checked, and its row
        self._history: tuple[Event, ...] | None = None  # cached as _cache (AWS reads it per request)
        self._staged: Staged | None = None  # the writes of an apply_all under way
        self._placement_saved: list | None = None  # the planner's placement as last stored (plannerrows)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            # SQLite writes whole pages: a partial one at the end is a file cut short (or
            # grown by something else), whatever page it cut; quick_check may not see it
            # when the write-ahead log still holds that page.
            page, size = self._db.execute("PRAGMA page_size").fetchone()[0], os.path.getsize(path)
            if size % page:
                raise sqlite3.DatabaseError(f"{size} bytes, not a whole number of {page}-byte pages: cut short?")
            # A damaged page would otherwise surface later, as a DatabaseError in the middle
            # of a walk; quick_check reads every page once (the file is small).
            problem = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {problem}")
            with self.transaction():  # one statement at a time: executescript() would COMMIT first
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "malformed" not in str(e):
                raise RepositoryError(f"cannot open the event repository {path}: {e}; check that the state "
                                      f"folder exists and is writable") from e
            raise RepositoryError(f"the event repository {path} is corrupt ({e})") from e
        except sqlite3.Error as e:
            raise RepositoryError(f"cannot open the event repository {path}: {e}; check that the state folder "
                                  f"exists and is writable, or remove a corrupt file after netsim down") from e
        version = self._meta("schema_version")
        if version is None:
            with self.transaction():
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif version != str(SCHEMA_VERSION):
            raise RepositoryError(f"{path} has schema version {version}, this netsim uses {SCHEMA_VERSION}; "
                                  f"finish the maintenance with the netsim that wrote it, or delete the file")
        self._data_version = self._pragma_data_version()

    def close(self) -> None:
        """Close the database (further calls fail)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Repository":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all of them or none. Nested uses join the outer transaction."""
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._db.execute("ROLLBACK")
                    self._cache.clear()  # it may hold rows of the rolled-back writes
                    self._history = None
                    self._placement_saved = None
                raise
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _pragma_data_version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def _fresh(self) -> None:
        """Drop the cache if another connection committed since we last looked."""
        if self._depth or self.sole_writer:
            return  # two fcntl calls per PRAGMA: half of a metadata answer's cost
        version = self._pragma_data_version()
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()
            self._history = None

    def _bump(self, node: str, change: "Callable[[tuple[Event, ...]], tuple[Event, ...]] | None" = None) -> None:
        self._db.execute("INSERT INTO nodes VALUES (?, 2) ON CONFLICT (node) DO UPDATE SET incarnation = incarnation + 1",
                         (node,))
        hit = self._cache.pop(node, None)
        if hit is not None and change is not None:
            # Written through (a rollback clears the cache): the next read of the node, a
            # woken long poll's, needs no SELECT and no decoding of every row again.
            self._cache[node] = (hit[0] + 1, change(hit[1]))

    # -- events ------------------------------------------------------------------------

    def put_event(self, node: str, event: Event) -> bool:
        """File ``event`` on ``node``, or replace the stored copy; False if it was already so."""
        if self._staged is not None:  # inside apply_all: written with the batch's statements
            return self._stage_put(self._staged, node, event)
        if event is not self._checked[0]:  # a walk files one event on many nodes: checked once
            check_event(event)
            self._checked = (event, row_of(event))
        row = self._checked[1]
        # The cached copy is what a read of the row gives back: the events table keeps no end.
        stored = event if event.ended is None else dataclasses.replace(event, ended=None)
        with self.transaction():
            old = self._db.execute(f"SELECT {COLUMNS} FROM events WHERE node = ? AND event_id = ?",
                                   (node, event.event_id)).fetchone()
            if old is not None and event_of(old) == event:
                return False
            if old is None:
                self._db.execute(f"INSERT INTO events (node, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 (node, *row))
                self._bump(node, lambda events: (*events, stored))
            else:
                self._db.execute("UPDATE events SET kind=?, resources=?, status=?, not_before=?, created=?, "
                                 "description=?, source=?, duration_s=?, avset=?, not_after=?, code=? "
                                 "WHERE node = ? AND event_id = ?", (*row[1:], node, event.event_id))
                self._bump(node, lambda events: tuple(stored if e.event_id == stored.event_id else e for e in events))
            return True

    def remove_event(self, node: str, event_id: str) -> bool:
        """Drop ``event_id`` from ``node``; False if it was not there."""
        if self._staged is not None:
            return self._stage_remove(self._staged, node, event_id)
        with self.transaction():
            gone = self._db.execute("DELETE FROM events WHERE node = ? AND event_id = ?", (node, event_id)).rowcount
            if gone:
                self._bump(node, lambda events: tuple(e for e in events if e.event_id != event_id))
            return bool(gone)

    def end_event(self, event: Event) -> bool:
        """Keep ``event`` (Completed or Canceled) in the history; False if it is there already.
        Only the newest :data:`HISTORY_LIMIT` ended events are kept."""
        if event.live or event.ended is None:
            raise RepositoryError(f"event {event.event_id} is {event.status} with ended={event.ended!r}: only an "
                                  f"event that ended (Completed or Canceled, with its end time) goes to history")
        check_event(event)
        with self.transaction():
            cur = self._db.execute(f"INSERT OR IGNORE INTO history ({COLUMNS}, ended) VALUES "
                                   f"(?,?,?,?,?,?,?,?,?,?,?,?,?)", (*row_of(event), event.ended))
            self._db.execute("DELETE FROM history WHERE seq <= (SELECT MAX(seq) FROM history) - ?", (HISTORY_LIMIT,))
            self._history = None
            return bool(cur.rowcount)

    def history(self) -> tuple[Event, ...]:
        """Ended events, oldest end first."""
        with self._lock:
            self._fresh()
            if self._history is None:
                rows = self._db.execute(f"SELECT {COLUMNS}, ended FROM history ORDER BY seq").fetchall()
                self._history = tuple(event_of(r) for r in rows)
            return self._history

    # -- the approvals inbox -----------------------------------------------------------

    def request_approval(self, node: str, event_id: str, at: float | None = None) -> bool:
        """Put a VM's approval of ``event_id`` (seen on ``node``) in the inbox, durably;
        False if it is already waiting there. The status stays the planner's to write."""
        with self.transaction():
            cur = self._db.execute("INSERT OR IGNORE INTO approvals (event_id, node, at) VALUES (?, ?, ?)",
                                   (event_id, node, time.time() if at is None else at))
            return bool(cur.rowcount)

    def approvals(self) -> list[str]:
        """Event ids in the inbox, in the order the approvals arrived."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT event_id FROM approvals ORDER BY seq")]

    def clear_approvals(self, event_ids: list[str]) -> None:
        """Take these ids out of the inbox (in the transaction that stores what they caused)."""
        with self.transaction():
            self._db.executemany("DELETE FROM approvals WHERE event_id = ?", [(i,) for i in event_ids])

    def events(self, node: str) -> tuple[Event, ...]:
        """The events ``node`` shows, in the order they were filed."""
        return self._load(node)[1]

    def event(self, node: str, event_id: str) -> Event | None:
        """The copy of ``event_id`` stored on ``node``, or None."""
        return next((e for e in self.events(node) if e.event_id == event_id), None)

    def incarnation(self, node: str) -> int:
        """``node``'s DocumentIncarnation: 1, then one more for every change of what it shows."""
        return self._load(node)[0]

    def nodes_holding(self, event_id: str) -> list[str]:
        """The nodes whose repository holds ``event_id``."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT node FROM events WHERE event_id = ? ORDER BY node",
                                                   (event_id,))]

    def all_events(self) -> dict[str, tuple[Event, ...]]:
        """``{node: events}`` for every node that holds at least one event."""
        with self._lock:
            nodes = [r[0] for r in self._db.execute("SELECT DISTINCT node FROM events ORDER BY node")]
        return {n: self.events(n) for n in nodes}

    def _load(self, node: str) -> tuple[int, tuple[Event, ...]]:
        with self._lock:
            self._fresh()
            hit = self._cache.get(node)
            if hit is not None:
                return hit
            row = self._db.execute("SELECT incarnation FROM nodes WHERE node = ?", (node,)).fetchone()
            rows = self._db.execute(f"SELECT {COLUMNS} FROM events WHERE node = ? ORDER BY rowid", (node,))
            hit = (row[0] if row else 1, tuple(event_of(r) for r in rows))
            self._cache[node] = hit
            return hit

    # -- exactly-once ledger -----------------------------------------------------------

    def applied(self, key: str) -> bool:
        """Whether the action with this key was applied (state ``done``)."""
        return self.ledger_state(key) == "done"

    def ledger_state(self, key: str) -> str | None:
        """``begun``, ``done`` or None for an action key."""
        with self._lock:
            row = self._db.execute("SELECT state FROM applied WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def begin(self, key: str, at: float | None = None, action: dict | None = None) -> bool:
        """Record that an effect is about to be made real (with its ``action`` as JSON, to
        resume it after a crash); False if the key is already known."""
        with self.transaction():
            cur = self._db.execute("INSERT OR IGNORE INTO applied VALUES (?, 'begun', ?)",
                                   (key, time.time() if at is None else at))
            if cur.rowcount and action is not None:
                self._db.execute("INSERT OR REPLACE INTO effect_actions VALUES (?, ?)", (key, json.dumps(action)))
            return bool(cur.rowcount)

    def begun_effects(self) -> list[tuple[str, float, dict | None]]:
        """(key, when begun, action) of every effect begun but not finished, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT a.key, a.at, e.action FROM applied a LEFT JOIN effect_actions e "
                                    "ON a.key = e.key WHERE a.state = 'begun' ORDER BY a.at, a.key").fetchall()
        return [(k, at, json.loads(action) if action else None) for k, at, action in rows]

    def finish(self, key: str, at: float | None = None) -> None:
        """Record that the action with this key is applied for good."""
        if self._staged is not None:
            return self._staged.done.append((key, time.time() if at is None else at))
        with self.transaction():
            self._db.execute("INSERT INTO applied VALUES (?, 'done', ?) ON CONFLICT (key) DO UPDATE "
                             "SET state = 'done', at = excluded.at", (key, time.time() if at is None else at))

    def begun_keys(self) -> list[str]:
        """Effects begun but not finished (a crash hit them): check reality, then finish or redo."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT key FROM applied WHERE state = 'begun' ORDER BY at, key")]

    def prune_ledger(self, before: float) -> int:
        """Forget ``done`` keys recorded before ``before``; returns how many."""
        with self.transaction():
            return self._db.execute("DELETE FROM applied WHERE state = 'done' AND at < ?", (before,)).rowcount

    def apply(self, action: Action, at: float | None = None) -> bool:
        """Apply a repository action (File/Update/Remove/EndEvent) and record its key, atomically.

        False if the key was already applied: the action is skipped. Effects (ApplyEffect,
        Heal) are the host agent's: wrap them in :meth:`begin` and :meth:`finish`.
        """
        if not isinstance(action, REPOSITORY_ACTIONS):
            raise RepositoryError(f"{type(action).__name__} is an effect, not a repository change: make it real "
                                  f"yourself between begin({action.key!r}) and finish({action.key!r})")
        with self.transaction():
            if self.applied(action.key):
                return False
            if isinstance(action, (FileEvent, UpdateEvent)):
                self.put_event(action.node, action.event)
            elif isinstance(action, RemoveEvent):
                self.remove_event(action.node, action.event_id)
            elif isinstance(action, EndEvent):
                self.end_event(action.event)
            self.finish(action.key, at)
            return True

    def view(self, node: str, on_approve: ApproveHook | None = None) -> "NodeEventView":
        """The :class:`NodeEventView` of ``node`` (approval hook: ``on_approve`` or the repository's)."""
        return NodeEventView(self, node, on_approve)
