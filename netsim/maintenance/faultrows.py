"""The repository's ``faults`` table (issue 13): the faults in force, kept beside the events.

A mixin of :class:`~netsim.maintenance.repository.Repository` (its connection, lock and
transactions), in a module of its own so that the repository stays one responsibility a file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import TYPE_CHECKING

from netsim.maintenance.errors import RepositoryError
from netsim.model import bounds

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class FaultRows:
    """Store, list and forget faults (mixed into Repository)."""

    _db: sqlite3.Connection
    _lock: threading.RLock

    if TYPE_CHECKING:  # the repository's own methods
        def transaction(self) -> AbstractContextManager[None]: ...

        def _meta(self, key: str) -> str | None: ...

    def put_fault(self, seq: int, fault: dict) -> None:
        """Store fault ``fault-<seq>`` (a :meth:`netsim.runtime.faultspec.Fault.to_dict`);
        its times must be servable epoch seconds (RepositoryError otherwise, nothing stored)."""
        for what in ("starts_at", "ends_at"):
            value = fault.get(what)
            if value is not None and (why := bounds.problem(value, bounds.EPOCH_S, f"fault {what}")):
                raise RepositoryError(f"{why}; the fault was not stored")
        with self.transaction():
            self._db.execute("INSERT INTO faults VALUES (?, ?) ON CONFLICT (seq) DO UPDATE SET fault = excluded.fault",
                             (seq, json.dumps(fault, separators=(",", ":"))))
            # The last number given, so that a cleared fault's id is never given again.
            self._db.execute("INSERT INTO meta VALUES ('fault_seq', ?) ON CONFLICT (key) DO UPDATE SET "
                             "value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))", (str(seq),))

    def last_fault_seq(self) -> int:
        """The highest fault number ever stored (0: none)."""
        return int(self._meta("fault_seq") or 0)

    def remove_faults(self, seqs: list[int]) -> None:
        """Forget these faults."""
        with self.transaction():
            self._db.executemany("DELETE FROM faults WHERE seq = ?", [(s,) for s in seqs])

    def faults(self) -> list[tuple[int, dict]]:
        """Every stored fault, ``(seq, fault)``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, fault FROM faults ORDER BY seq").fetchall()
        return [(seq, json.loads(text)) for seq, text in rows]
