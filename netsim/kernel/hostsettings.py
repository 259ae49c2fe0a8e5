"""Host-wide settings netsim changes (the ARP cache limits), put back when the last
datacenter goes.

The neighbour table's ``gc_thresh1/2/3`` exist only in the host's namespace and bound
the entries of every namespace together, so no one datacenter's state folder can own
them. Their record lives in the run folder (``$NETSIM_RUN_DIR``, default ``/run/netsim``,
a tmpfs emptied at boot just as the kernel forgets the values), ``host-settings.json``::

    {"original": {"net/ipv4/neigh/default/gc_thresh3": 1024, ...},  # before netsim raised it
     "written":  {"net/ipv4/neigh/default/gc_thresh3": 1064, ...},  # what netsim last wrote
     "holders":  {"dc1": [PID, START_TIME], ...}}                   # who registered

Every datacenter *holds* the settings from the start of its build, whether or not it
raised them (it may rely on another's raise), until ``down`` or ``cleanup`` releases it.
A holder no longer counts once none of its namespaces exists and the process that
registered it has exited (a crash that left nothing), so a kill -9 never pins them.
When no holder is left, each setting goes back to its original value, unless someone
else changed it meanwhile (it no longer reads what netsim wrote): that is theirs.

The decisions (:func:`plan_hold`, :func:`plan_release`) are pure; :func:`hold` and
:func:`release` do the I/O under a host-wide flock, so concurrent builds and teardowns
of several datacenters never lose an update.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from netsim.model import names
from netsim.kernel import netns
from netsim.state import run_root
from netsim.kernel.teardown import alive, start_time

RECORD = "host-settings.json"
SYSCTL_ROOT = "/proc/sys"

Record = dict  # {"original": {key: int}, "written": {key: int}, "holders": {dc: [pid, start]}}


def sysctl_root() -> str:
    """Where the host's sysctls are read and written (``NETSIM_SYSCTL_ROOT`` lets tests
    point it at a folder of files instead of the real host)."""
    return os.environ.get("NETSIM_SYSCTL_ROOT", SYSCTL_ROOT)


# -- the pure decisions ------------------------------------------------------------------

def _copy(record: Mapping) -> Record:
    return {"original": dict(record.get("original", {})), "written": dict(record.get("written", {})),
            "holders": {dc: list(h) for dc, h in record.get("holders", {}).items()}}


def plan_hold(record: Mapping, dc: str, holder: list, current: Mapping[str, int | None],
              wanted: Mapping[str, int]) -> tuple[Record, dict[str, int]]:
    """Register ``dc`` (``holder`` = [pid, start time]) and decide what to raise.

    ``current`` is what the host reads now (None: not available), ``wanted`` the
    minimum this datacenter needs. Limits are only ever raised. Returns the new record
    and the writes to make.
    """
    new = _copy(record)
    new["holders"][dc] = list(holder)
    writes = {}
    for key, value in wanted.items():
        now = current.get(key)
        if now is None or now >= value:
            continue
        # The first raise records the original; so does a raise over a value someone else
        # set since netsim last wrote (theirs is then what to go back to).
        if key not in new["original"] or new["written"].get(key) != now:
            new["original"][key] = now
        new["written"][key] = value
        writes[key] = value
    return new, writes


def plan_release(record: Mapping, dc: str, live: set[str],
                 current: Mapping[str, int | None]) -> tuple[Record | None, dict[str, int]]:
    """Drop ``dc`` and every holder not in ``live``; if none is left, decide what to restore.

    Returns the new record (None: delete it, nothing is held) and the writes to make:
    each original value whose setting still reads what netsim wrote.
    """
    new = _copy(record)
    new["holders"] = {d: h for d, h in new["holders"].items() if d != dc and d in live}
    if new["holders"]:
        return new, {}
    writes = {key: value for key, value in new["original"].items()
              if current.get(key) is not None and current.get(key) == new["written"].get(key) != value}
    return None, writes


# -- the I/O -----------------------------------------------------------------------------

def _read(key: str) -> int | None:
    try:
        with open(os.path.join(sysctl_root(), key)) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _write(writes: Mapping[str, int], ascending: bool) -> dict[str, int]:
    """Write ``writes``; gc_thresh1 <= 2 <= 3 is kept at every step by raising from the
    top down and lowering from the bottom up. Returns what was written."""
    done = {}
    for key in sorted(writes, reverse=not ascending):
        try:
            with open(os.path.join(sysctl_root(), key), "w") as f:
                f.write(str(writes[key]))
            done[key] = writes[key]
        except OSError:
            pass  # not the host's namespace (netsim in a container): nothing to tune
    return done


class _Saved:
    """The record as read under the lock; :meth:`save` writes it (None deletes it)."""

    def __init__(self, path: str, record: Record | None) -> None:
        self.path, self.record = path, record

    def save(self, record: Record | None) -> None:
        self.record = record
        if record is None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, self.path)


@contextmanager
def _locked_record(create: bool) -> Iterator[_Saved]:
    """Hold the host-wide lock and yield the record (``record`` None: there is none).
    Without ``create``, no folder or lock is made when there is no record."""
    root = run_root()
    path = os.path.join(root, RECORD)
    if not create and not os.path.exists(path):
        yield _Saved(path, None)
        return
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, RECORD + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                record = json.load(f)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            record = None
        except ValueError:
            # A torn or damaged record: keep it aside; from now on netsim raises and keeps
            # what it finds, which is the safe direction for ARP capacity.
            os.replace(path, path + ".corrupt")
            record = None
        yield _Saved(path, record)
    finally:
        os.close(fd)


def hold(dc: str, wanted: Mapping[str, int]) -> dict[str, int]:
    """Register datacenter ``dc`` as a holder and raise each setting to at least
    ``wanted`` (keys relative to /proc/sys); returns the values written."""
    me = os.getpid()
    with _locked_record(create=True) as saved:
        current = {key: _read(key) for key in wanted}
        record, writes = plan_hold(saved.record or {}, dc, [me, start_time(me)], current, wanted)
        saved.save(record)  # the originals first: a crash after it never loses them
        return _write(writes, ascending=False)


def _live(dc: str, holder: list) -> bool:
    if netns.list_names(names.dc_prefix(dc)):
        return True
    return len(holder) == 2 and isinstance(holder[0], int) and alive(holder[0], holder[1])


def release(dc: str) -> dict[str, int]:
    """Datacenter ``dc`` is gone: drop it (and holders that left nothing behind); when
    no holder remains, put back the original values. Returns the values written."""
    with _locked_record(create=False) as saved:
        record = saved.record
        if record is None or dc not in record.get("holders", {}):
            return {}
        live = {d for d, h in record["holders"].items() if d != dc and _live(d, h)}
        current = {key: _read(key) for key in record.get("original", {})}
        record, writes = plan_release(record, dc, live, current)
        written = _write(writes, ascending=True)
        saved.save(record)  # after the restore: a crash before it leaves a holder that no longer counts
        return written
