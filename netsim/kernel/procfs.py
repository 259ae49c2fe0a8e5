"""The one reader of ``/proc/PID/{stat,cmdline,ns/net}``.

``/proc/PID/stat`` is ``PID (COMM) STATE PPID ...``; COMM may hold spaces and
parentheses, so the fields are read after the *last* ``)`` (proc(5)). A process that is
gone reads as None, never as an error: it may exit between any two reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_GONE = (FileNotFoundError, ProcessLookupError)


@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/PID/stat`` that netsim reads."""

    state: str
    """The state letter (field 3): R, S, D, T (stopped), t (traced), Z (zombie), X (dead), ..."""
    start_time: str
    """The kernel's start time in clock ticks since boot (field 22), as written: with the
    PID it names one process even after PIDs wrap around."""
    utime: int
    """User-mode CPU time in clock ticks (field 14)."""
    stime: int
    """Kernel-mode CPU time in clock ticks (field 15)."""

    @property
    def exited(self) -> bool:
        """A zombie or dead task: it holds no namespace any more."""
        return self.state in ("Z", "X")


def parse_stat(text: str) -> Stat:
    """Parse the contents of a ``/proc/PID/stat`` file (ValueError if it is not one)."""
    try:
        fields = text.rsplit(")", 1)[1].split()
        return Stat(fields[0], fields[19], int(fields[11]), int(fields[12]))
    except IndexError:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}") from None


def stat(pid: int) -> Stat | None:
    """``/proc/PID/stat`` of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except _GONE:
        return None
    try:
        return parse_stat(text)
    except ValueError:
        return None


def task_state(pid: int) -> str | None:
    """The state letter of ``pid`` (see :attr:`Stat.state`), or None if it is gone."""
    s = stat(pid)
    return s.state if s else None


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (:attr:`Stat.start_time`), or None if it is gone."""
    s = stat(pid)
    return s.start_time if s else None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` in seconds (0.0 if it is gone)."""
    s = stat(pid)
    return (s.utime + s.stime) / os.sysconf("SC_CLK_TCK") if s else 0.0


def cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid`` (``/proc/PID/cmdline``), or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except (*_GONE, PermissionError):
        return None
    return data.decode(errors="replace").split("\0")


def netns_inode(pid: int) -> int | None:
    """The inode of ``pid``'s network namespace (``/proc/PID/ns/net``), or None."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:  # gone, or not ours to inspect (PID 1 in some containers)
        return None


def pids() -> list[int]:
    """Every PID in ``/proc`` now."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]
