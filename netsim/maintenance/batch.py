"""The repository's batched write of a drain: many actions, a handful of statements.

A walk's event is filed on every node of its availability set (100 nodes: 100
FileEvents), so one control input used to cost some 500 SQLite statements, run one by
one while every metadata request of the datacenter waited on the loop.
:meth:`BatchWrites.apply_all` applies the actions one at a time, in order, through the
repository's own methods (``put_event``, ``remove_event``, ``end_event``, ``finish``), but
while it runs those *stage* their rows (:class:`Staged`): one read of the ledger, one read
of the rows the actions touch, and at the end one ``executemany`` per kind of statement.
It runs inside one transaction: all of it commits or none (a refusal rolls it back).

A mixin of :class:`~netsim.maintenance.repository.Repository` (it uses its connection,
its event cache and its last-checked event).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from netsim_imds.events import Event

from netsim.maintenance.actions import (REPOSITORY_ACTIONS, Action, ChangedNames, EndEvent, FileEvent, RemoveEvent,
                                        UpdateEvent, action_to_dict, note_change)
from netsim.maintenance.schema import COLUMNS, check_event, event_of, row_of

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

_CHUNK = 500
"""Parameters per ``IN (...)`` list."""

Where = tuple[str, str]
"""``(node, event_id)``: one row of ``events``."""


@dataclasses.dataclass
class Staged:
    """The writes of one :meth:`BatchWrites.apply_all`, not yet sent to SQLite."""

    rows: dict[Where, tuple | None]  # every row the actions touch, as it stands after them (None: absent)
    before: dict[Where, tuple]  # those rows as SQLite holds them
    deleted: set[Where] = dataclasses.field(default_factory=set)  # removed at some point: re-filed, goes last
    bumps: dict[str, int] = dataclasses.field(default_factory=dict)  # node -> changes of its events
    done: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # ledger keys finished, and when
    decoded: dict[tuple, Event] = dataclasses.field(default_factory=dict)  # a row as an event, decoded once

    def stored(self, node: str, event_id: str) -> Event | None:
        """The copy of ``event_id`` on ``node`` as the staged writes leave it."""
        row = self.rows.get((node, event_id))
        if row is None:
            return None
        event = self.decoded.get(row)  # one event's rows are alike on every node
        if event is None:
            event = self.decoded[row] = event_of(row)
        return event


def _chunks(values: list) -> Iterator[list]:
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


class BatchWrites:
    """:meth:`apply_all`: the actions of one drain in a few statements (mixed into Repository)."""

    _db: sqlite3.Connection
    _cache: dict[str, tuple[int, tuple[Event, ...]]]
    _checked: tuple[Event | None, tuple]
    _staged: Staged | None

    if TYPE_CHECKING:  # the repository's own methods
        def transaction(self) -> AbstractContextManager[None]: ...

        def put_event(self, node: str, event: Event) -> bool: ...

        def remove_event(self, node: str, event_id: str) -> bool: ...

        def end_event(self, event: Event) -> bool: ...

        def finish(self, key: str, at: float | None = None) -> None: ...

    def apply_all(self, actions: Iterable[Action], at: float, changed: ChangedNames) -> list[Action]:
        """Apply ``actions`` in order, exactly once each, in one transaction, as
        :meth:`~netsim.maintenance.repository.Repository.apply` and ``begin`` one at a time
        would: a repository action is stored with its key (skipped if the key is done), an
        effect is begun with its action at ``at`` (skipped if its key is known). ``changed``
        gets what each repository action changes (:func:`~netsim.maintenance.actions.note_change`,
        as the repository stood before it). Returns the effects begun, in order."""
        actions = list(actions)
        if not actions:
            return []
        with self.transaction():
            ledger = self._ledger([a.key for a in actions])
            staged = self._staged = Staged(*self._rows(actions))
            begun: list[Action] = []
            try:
                for action in actions:
                    key = action.key
                    if ledger.get(key) == "done":
                        continue
                    if not isinstance(action, REPOSITORY_ACTIONS):
                        if key not in ledger:
                            ledger[key] = "begun"
                            begun.append(action)
                        continue
                    note_change(changed, action, staged.stored)
                    if isinstance(action, (FileEvent, UpdateEvent)):
                        self.put_event(action.node, action.event)
                    elif isinstance(action, RemoveEvent):
                        self.remove_event(action.node, action.event_id)
                    elif isinstance(action, EndEvent):
                        self.end_event(action.event)  # one per ended event: written at once
                    self.finish(key)
                    ledger[key] = "done"
            finally:
                self._staged = None
            self._write(staged)
            if begun:
                self._db.executemany("INSERT INTO applied VALUES (?, 'begun', ?)", [(a.key, at) for a in begun])
                self._db.executemany("INSERT OR REPLACE INTO effect_actions VALUES (?, ?)",
                                     [(a.key, json.dumps(action_to_dict(a))) for a in begun])
            return begun

    def _ledger(self, keys: list[str]) -> dict[str, str]:
        """``{key: state}`` of the keys the ledger knows."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        for part in _chunks(keys):
            out.update(self._db.execute(f"SELECT key, state FROM applied WHERE key IN ({','.join('?' * len(part))})",
                                        part).fetchall())
        return out

    def _rows(self, actions: list[Action]) -> tuple[dict[Where, tuple | None], dict[Where, tuple]]:
        """The stored rows of every event the actions name, on every node (twice: to change, and as before)."""
        ids = list(dict.fromkeys(a.event.event_id if isinstance(a, (FileEvent, UpdateEvent)) else a.event_id
                                 for a in actions if isinstance(a, (FileEvent, UpdateEvent, RemoveEvent))))
        rows: dict[Where, tuple | None] = {}
        for part in _chunks(ids):
            for node, *row in self._db.execute(f"SELECT node, {COLUMNS} FROM events WHERE event_id IN "
                                               f"({','.join('?' * len(part))})", part):
                rows[(node, row[0])] = tuple(row)
        return rows, dict(rows)  # type: ignore[arg-type]

    def _stage_put(self, staged: Staged, node: str, event: Event) -> bool:
        """``put_event`` inside :meth:`apply_all`: the row and the cache now, the SQL at the end."""
        if event is not self._checked[0]:  # a walk files one event on many nodes: checked once
            check_event(event)
            self._checked = (event, row_of(event))
        row = self._checked[1]
        where = (node, event.event_id)
        old = staged.rows.get(where)
        # The events table keeps no end: an event with one differs from every row.
        if old is not None and event.ended is None and (old == row or event_of(old) == event):
            return False
        if where in staged.rows and old is None:
            del staged.rows[where]  # removed earlier in the batch: filed again, it goes last (a new rowid)
        staged.rows[where] = row
        stored = event if event.ended is None else dataclasses.replace(event, ended=None)
        if old is None:
            self._stage_bump(staged, node, lambda events: (*events, stored))
        else:
            self._stage_bump(staged, node, lambda events: tuple(stored if e.event_id == stored.event_id else e
                                                                for e in events))
        return True

    def _stage_remove(self, staged: Staged, node: str, event_id: str) -> bool:
        """``remove_event`` inside :meth:`apply_all`."""
        where = (node, event_id)
        if staged.rows.get(where) is None:
            return False
        staged.rows[where] = None
        staged.deleted.add(where)
        self._stage_bump(staged, node, lambda events: tuple(e for e in events if e.event_id != event_id))
        return True

    def _stage_bump(self, staged: Staged, node: str, change: Callable[[tuple[Event, ...]], tuple[Event, ...]]) -> None:
        """One more incarnation for ``node``; its cached events written through (as ``_bump``)."""
        staged.bumps[node] = staged.bumps.get(node, 0) + 1
        hit = self._cache.pop(node, None)
        if hit is not None:
            self._cache[node] = (hit[0] + 1, change(hit[1]))

    def _write(self, staged: Staged) -> None:
        """The staged rows as statements: deletions first, then new rows in the order they
        were filed (a node reads its events by rowid), changed rows, incarnations, the ledger."""
        db, rows, before, deleted = self._db, staged.rows, staged.before, staged.deleted
        gone = [w for w in before if w in deleted or rows[w] is None]
        if gone:
            db.executemany("DELETE FROM events WHERE node = ? AND event_id = ?", gone)
        new = [(*w[:1], *row) for w, row in rows.items() if row is not None and (w not in before or w in deleted)]
        if new:
            db.executemany(f"INSERT INTO events (node, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", new)
        updated = [(*row[1:], *w) for w, row in rows.items()
                   if row is not None and w in before and w not in deleted and row != before[w]]
        if updated:
            db.executemany("UPDATE events SET kind=?, resources=?, status=?, not_before=?, created=?, description=?, "
                           "source=?, duration_s=?, avset=?, not_after=?, code=? WHERE node = ? AND event_id = ?",
                           updated)
        if staged.bumps:
            # n changes of a node's events: n more incarnations (1 before the first: 1 + n).
            db.executemany("INSERT INTO nodes VALUES (?, 1 + ?) ON CONFLICT (node) DO UPDATE "
                           "SET incarnation = incarnation + excluded.incarnation - 1", list(staged.bumps.items()))
        if staged.done:
            db.executemany("INSERT INTO applied VALUES (?, 'done', ?) ON CONFLICT (key) DO UPDATE "
                           "SET state = 'done', at = excluded.at", staged.done)
