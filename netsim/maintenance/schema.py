"""The tables of the event repository and the conversion of events to rows and back."""

from __future__ import annotations

import json

from netsim_imds.events import Event

from netsim.maintenance.errors import RepositoryError
from netsim.model import bounds

SCHEMA_VERSION = 3
"""Version of :data:`SCHEMA`, kept in ``meta``."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS effect_actions (key TEXT PRIMARY KEY, action TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, incarnation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    node        TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,              -- netsim_imds.events.Kind
    resources   TEXT NOT NULL,              -- JSON array of VM names
    status      TEXT NOT NULL CHECK (status IN ('Scheduled', 'Started')),
    not_before  REAL NOT NULL,
    created     REAL NOT NULL,
    description TEXT NOT NULL,
    source      TEXT NOT NULL,
    duration_s  INTEGER,                    -- NULL: unknown
    avset       TEXT NOT NULL,
    not_after   REAL,
    code        TEXT NOT NULL DEFAULT '',   -- the flavor's other name of the kind ('' : none)
    UNIQUE (node, event_id)                 -- also the index that reads one node's events
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (event_id);
CREATE TABLE IF NOT EXISTS history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    resources   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('Completed', 'Canceled')),
    not_before  REAL NOT NULL,
    created     REAL NOT NULL,
    description TEXT NOT NULL,
    source      TEXT NOT NULL,
    duration_s  INTEGER,
    avset       TEXT NOT NULL,
    not_after   REAL,
    code        TEXT NOT NULL DEFAULT '',
    ended       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    node     TEXT NOT NULL,
    at       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    key   TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('begun', 'done')),
    at    REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS planner (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS planner_parts (  -- added without a version bump: netsim.maintenance.plannerrows
    part  TEXT PRIMARY KEY,                 -- 'placement': the fleet's, written only when it changes
    state TEXT NOT NULL                     -- JSON
);
CREATE TABLE IF NOT EXISTS faults (     -- issue 13, added without a version bump (IF NOT EXISTS)
    seq   INTEGER PRIMARY KEY,          -- N of fault-N
    fault TEXT NOT NULL                 -- JSON: netsim.runtime.faultspec.Fault.to_dict
);
"""
"""The tables of the repository (created on first open)."""

COLUMNS = ("event_id, kind, resources, status, not_before, created, description, source, duration_s, avset, not_after, "
           "code")
"""The columns of an event, in the order of :func:`row_of` and :func:`event_of`."""

def check_event(event: Event) -> None:
    """Raise :class:`RepositoryError` unless every number of ``event`` can be stored and served:
    the last line of defence, so that nothing non-finite or out of range ever lands in SQLite
    (SQLite stores NaN as NULL and inf as a REAL that no date format can show)."""
    for what, value, bound in (("not_before", event.not_before, bounds.EPOCH_S),
                               ("created", event.created, bounds.EPOCH_S),
                               ("duration_s", event.duration_s, bounds.DURATION_S),
                               ("not_after", event.not_after, bounds.EPOCH_S),
                               ("ended", event.ended, bounds.EPOCH_S)):
        if value is None and what in ("duration_s", "not_after", "ended"):
            continue  # unknown, or not ended yet
        if why := bounds.problem(value, bound, f"event {event.event_id} {what}"):
            raise RepositoryError(f"{why}; the event was not stored")


def row_of(event: Event) -> tuple:
    """The row of ``event`` in the order of :data:`COLUMNS`."""
    return (event.event_id, event.kind.value, json.dumps(list(event.resources)), event.status.value,
            event.not_before, event.created, event.description, event.source.value, event.duration_s, event.avset,
            event.not_after, event.code)


def event_of(row: tuple) -> Event:
    """The event of a row read in the order of :data:`COLUMNS` (then ``ended``, for history)."""
    return Event(row[0], row[1], tuple(json.loads(row[2])), row[4], row[5], status=row[3], description=row[6],
                 source=row[7], duration_s=row[8], avset=row[9], not_after=row[10], code=row[11],
                 ended=row[12] if len(row) > 12 else None)
