"""The host agents' durable event repository: one SQLite file in the datacenter's state folder.

What it holds (schema in :data:`SCHEMA`):

- ``events``: the events each node shows, every :class:`~netsim_imds.events.Event` field,
  in the order they were filed (rowid);
- ``nodes``: each node's ``incarnation``, the DocumentIncarnation of what it shows,
  raised by every change (file, status change, removal), 1 before the first;
- ``applied``: the exactly-once ledger of action keys (``begun`` then ``done``);
- ``effect_actions``: the action (JSON) behind each begun effect, so a restarted daemon
  can finish what a crash interrupted;
- ``planner``: the planner's saved state (:meth:`Planner.to_dict
  <netsim.maintenance.planner.Planner.to_dict>`) as JSON.

Every write is one SQLite transaction (WAL mode): a crash mid-write leaves the state
before it. Readers are cheap: each node's events are cached until the next write, and
writes by another process are noticed through ``PRAGMA data_version``.

:class:`NodeEventView` serves one node's events to the metadata server (it implements
:class:`netsim_imds.events.EventView`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from netsim_imds.events import Event

from netsim.model import bounds
from netsim.maintenance.actions import REPOSITORY_ACTIONS, Action, FileEvent, RemoveEvent, UpdateEvent
from netsim.maintenance.errors import RepositoryError

SCHEMA_VERSION = 1
"""Version of :data:`SCHEMA`, kept in ``meta``."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS effect_actions (key TEXT PRIMARY KEY, action TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, incarnation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    node        TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    resources   TEXT NOT NULL,              -- JSON array of VM names
    status      TEXT NOT NULL CHECK (status IN ('Scheduled', 'Started')),
    not_before  REAL NOT NULL,
    created     REAL NOT NULL,
    description TEXT NOT NULL,
    source      TEXT NOT NULL,
    duration_s  INTEGER NOT NULL,
    avset       TEXT NOT NULL,
    UNIQUE (node, event_id)                 -- also the index that reads one node's events
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (event_id);
CREATE TABLE IF NOT EXISTS applied (
    key   TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('begun', 'done')),
    at    REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS planner (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
"""
"""The tables of the repository (created on first open)."""

_COLUMNS = "event_id, event_type, resources, status, not_before, created, description, source, duration_s, avset"

ApproveHook = Callable[[Event], None]
"""Called with the Started event the first time a VM approves it."""


def check_event(event: Event) -> None:
    """Raise :class:`RepositoryError` unless every number of ``event`` can be stored and served:
    the last line of defence, so that nothing non-finite or out of range ever lands in SQLite
    (SQLite stores NaN as NULL and inf as a REAL that no date format can show)."""
    for what, value, bound in (("not_before", event.not_before, bounds.EPOCH_S),
                               ("created", event.created, bounds.EPOCH_S),
                               ("duration_s", event.duration_s, bounds.DURATION_S)):
        if why := bounds.problem(value, bound, f"event {event.event_id} {what}"):
            raise RepositoryError(f"{why}; the event was not stored")


def _row(event: Event) -> tuple:
    return (event.event_id, event.event_type, json.dumps(list(event.resources)), event.status, event.not_before,
            event.created, event.description, event.source, event.duration_s, event.avset)


def _event(row: tuple) -> Event:
    return Event(row[0], row[1], tuple(json.loads(row[2])), row[4], row[5], status=row[3], description=row[6],
                 source=row[7], duration_s=row[8], avset=row[9])


class Repository:
    """The event repository of a datacenter, in the SQLite file ``path``.

    ``on_approve`` is the default approval hook of the :class:`NodeEventView` objects
    made by :meth:`view`. ``synchronous`` is SQLite's setting: ``NORMAL`` (the default)
    survives a killed process, ``FULL`` also a power cut. Safe to share between
    threads; one process should own writes (the daemon), others may read.
    """

    def __init__(self, path: str, *, on_approve: ApproveHook | None = None, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise RepositoryError(f"synchronous={synchronous!r}: use NORMAL or FULL")
        self.path = path
        self.on_approve = on_approve
        self._lock = threading.RLock()
        self._depth = 0
        self._cache: dict[str, tuple[int, tuple[Event, ...]]] = {}
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
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
        if self._depth:
            return
        version = self._pragma_data_version()
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()

    def _bump(self, node: str) -> None:
        self._db.execute("INSERT INTO nodes VALUES (?, 2) ON CONFLICT (node) DO UPDATE SET incarnation = incarnation + 1",
                         (node,))
        self._cache.pop(node, None)

    # -- events ------------------------------------------------------------------------

    def put_event(self, node: str, event: Event) -> bool:
        """File ``event`` on ``node``, or replace the stored copy; False if it was already so."""
        check_event(event)
        with self.transaction():
            old = self._db.execute(f"SELECT {_COLUMNS} FROM events WHERE node = ? AND event_id = ?",
                                   (node, event.event_id)).fetchone()
            if old is not None and _event(old) == event:
                return False
            if old is None:
                self._db.execute(f"INSERT INTO events (node, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                 (node, *_row(event)))
            else:
                self._db.execute("UPDATE events SET event_type=?, resources=?, status=?, not_before=?, created=?, "
                                 "description=?, source=?, duration_s=?, avset=? WHERE node = ? AND event_id = ?",
                                 (*_row(event)[1:], node, event.event_id))
            self._bump(node)
            return True

    def remove_event(self, node: str, event_id: str) -> bool:
        """Drop ``event_id`` from ``node``; False if it was not there."""
        with self.transaction():
            gone = self._db.execute("DELETE FROM events WHERE node = ? AND event_id = ?", (node, event_id)).rowcount
            if gone:
                self._bump(node)
            return bool(gone)

    def start_event(self, event_id: str) -> tuple[Event | None, bool]:
        """Mark ``event_id`` Started on every node holding it.

        Returns the Started event (None if no node holds it) and whether this call
        started it (False if it was already Started).
        """
        with self.transaction():
            nodes = [r[0] for r in self._db.execute(
                "SELECT node FROM events WHERE event_id = ? AND status = 'Scheduled'", (event_id,))]
            if nodes:
                self._db.execute("UPDATE events SET status = 'Started' WHERE event_id = ?", (event_id,))
                for node in nodes:
                    self._bump(node)
            row = self._db.execute(f"SELECT {_COLUMNS} FROM events WHERE event_id = ? LIMIT 1", (event_id,)).fetchone()
            return (_event(row) if row else None), bool(nodes)

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

    def started_event_ids(self) -> list[str]:
        """Ids of Started events: after a restart, approve them in the planner (a VM may have)."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT DISTINCT event_id FROM events WHERE status = 'Started' ORDER BY event_id")]

    def _load(self, node: str) -> tuple[int, tuple[Event, ...]]:
        with self._lock:
            self._fresh()
            hit = self._cache.get(node)
            if hit is not None:
                return hit
            row = self._db.execute("SELECT incarnation FROM nodes WHERE node = ?", (node,)).fetchone()
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM events WHERE node = ? ORDER BY rowid", (node,))
            hit = (row[0] if row else 1, tuple(_event(r) for r in rows))
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
        """Apply a repository action (File/Update/RemoveEvent) and record its key, atomically.

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
            self.finish(action.key, at)
            return True

    # -- planner state -----------------------------------------------------------------

    def save_planner(self, state: dict) -> None:
        """Store the planner's state (replacing the previous one)."""
        text = json.dumps(state, separators=(",", ":"))
        with self.transaction():
            self._db.execute("INSERT INTO planner VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                             (text,))

    def load_planner(self) -> dict | None:
        """The planner state last saved, or None."""
        with self._lock:
            row = self._db.execute("SELECT state FROM planner WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else None

    def view(self, node: str, on_approve: ApproveHook | None = None) -> "NodeEventView":
        """The :class:`NodeEventView` of ``node`` (approval hook: ``on_approve`` or the repository's)."""
        return NodeEventView(self, node, on_approve)


class NodeEventView:
    """One node's events as the metadata server reads them (:class:`netsim_imds.events.EventView`).

    Reads come straight from the repository (cached per incarnation). Approving marks the
    event Started on every node holding it, durably, then calls the hook once, so the
    host agent can tell the planner; approving a Started event again is still True.
    """

    def __init__(self, repo: Repository, node: str, on_approve: ApproveHook | None = None) -> None:
        self.repo, self.node = repo, node
        self._on_approve = on_approve

    @property
    def document_incarnation(self) -> int:
        """The node's incarnation: increases whenever what the node shows changes."""
        return self.repo.incarnation(self.node)

    def events_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The events of this node that VM ``vm`` (of availability set ``avset``) sees, oldest first."""
        return tuple(e for e in self.repo.events(self.node) if vm in e.resources or (avset and e.avset == avset))

    def approve(self, event_id: str) -> bool:
        """Start ``event_id`` now for all its resources; False if this node does not show it."""
        event = self.repo.event(self.node, event_id)
        if event is None:
            return False
        started, changed = self.repo.start_event(event_id)
        hook = self._on_approve or self.repo.on_approve
        if changed and hook is not None and started is not None:
            hook(started)
        return True
