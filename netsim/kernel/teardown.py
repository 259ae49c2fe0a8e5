"""Removing namespaces and waiting until the kernel has really destroyed them.

Unmounting a namespace returns at once; the kernel frees it later, in batches, once no
process, socket or mount holds it. Every namespace is given an id in the host's
namespace first; the kernel drops the id when it destroys the namespace, so the wait
ends exactly when the last one is gone rather than after a guessed delay.

Processes are ended only if netsim recorded them (PID *and* kernel start time, so a
reused PID is never hit) or if they run inside one of the datacenter's namespaces; the
daemon, which runs in the host's namespace, is also recognised by its command line
(``python -m netsim.runtime.daemon --name DC``), which only netsim uses.
"""

from __future__ import annotations

import os
import signal
import time

from netsim.kernel import netns, procfs
from netsim.errors import NamespaceError, StateError
from netsim.kernel.rtnl import MAX_BATCH, Rtnl, assigned_nsids, nsids


start_time = procfs.start_time
"""The kernel's start time of a PID (:func:`netsim.kernel.procfs.start_time`)."""


def alive(pid: int, started: str | None = None) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; ours is reaped) and, if
    ``started`` is given, is still the process that started then."""
    s = procfs.stat(pid)
    if s is None:
        return False
    if started is not None and s.start_time != started:
        return False
    if s.exited:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        return False
    return True


def signal_process(pid: int, started: str, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process that started at ``started``.

    A pidfd pins the process between the check and the signal: if it exits and its PID
    is reused meanwhile, the signal goes nowhere instead of to a stranger.
    """
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        if start_time(pid) != started:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def end_recorded(procs: list[tuple[int, str]], grace: float = 3.0, timeout: float = 5.0) -> int:
    """End the processes ``(pid, start time)`` that are still those processes: SIGTERM,
    then SIGKILL after ``grace`` seconds; wait until each has exited. Returns how many
    were signalled."""
    procs = [p for p in dict.fromkeys(procs) if signal_process(p[0], p[1], signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(*p) for p in procs):
        time.sleep(0.02)
    for pid, started in procs:
        if alive(pid, started):
            signal_process(pid, started, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(*p) for p in procs):
        time.sleep(0.02)
    return len(procs)


DAEMON_MODULE = "netsim.runtime.daemon"


def netsim_daemons(dc: str | None = None) -> dict[str, list[tuple[int, str]]]:
    """The running netsim daemons (of datacenter ``dc``, or of all), found by their
    command line ``... -m netsim.runtime.daemon --name DC``: ``{dc: [(pid, start time)]}``."""
    found: dict[str, list[tuple[int, str]]] = {}
    for pid in procfs.pids():
        argv = procfs.cmdline(pid)
        if argv is None:
            continue
        for i in range(len(argv) - 3):
            if argv[i:i + 3] == ["-m", DAEMON_MODULE, "--name"] and (dc is None or argv[i + 3] == dc):
                started = start_time(pid)
                if started is not None and alive(pid):
                    found.setdefault(argv[i + 3], []).append((pid, started))
                break
    return found


def processes_in(inodes: set[int]) -> list[int]:
    """PIDs of the processes whose network namespace is one of ``inodes``."""
    found = []
    me = os.getpid()
    for pid in procfs.pids():
        if pid != me and procfs.netns_inode(pid) in inodes:
            found.append(pid)
    return found


def end_processes(pids: list[int], timeout: float = 5.0, inodes: set[int] | None = None) -> None:
    """SIGKILL ``pids`` and wait until each has exited (zombies hold no namespace). With
    ``inodes``, a PID is hit only if it still runs in one of those network namespaces,
    checked through a pidfd so that a PID reused since the scan is left alone."""
    for pid in pids:
        if inodes is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            continue
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if procfs.netns_inode(pid) in inodes:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            s = procfs.stat(pid)
            if s is None or s.exited:
                break
            time.sleep(0.01)


def remove_namespaces(names: list[str], timeout: float = 60.0) -> int:
    """End the processes inside ``names``, unmount them, and wait until each is destroyed.

    Idempotent: names already gone are skipped. Returns how many were removed. Raises
    StateError if the kernel has not destroyed them within ``timeout`` seconds (something
    outside netsim still holds them open).
    """
    present = []
    for name in dict.fromkeys(names):
        if netns.inode_of(name) is None:
            netns.remove(name)  # a placeholder left by a crash between create and mount
        else:
            present.append(name)
    if not present:
        return 0
    ids, inodes = set(), set()
    with Rtnl.here("the host namespace") as root:
        for i in range(0, len(present), MAX_BATCH):
            fds = []
            try:
                for name in present[i:i + MAX_BATCH]:
                    try:
                        fds.append(netns.open_fd(name))
                    except NamespaceError:
                        continue
                ids.update(nsids(root, fds))
                inodes.update(os.fstat(fd).st_ino for fd in fds)
            finally:
                for fd in fds:
                    os.close(fd)
        end_processes(processes_in(inodes), inodes=inodes)
        for name in present:
            netns.remove(name)
        deadline = time.monotonic() + timeout
        while ids := ids & assigned_nsids(root):
            if time.monotonic() > deadline:
                raise StateError(f"{len(ids)} namespaces were unmounted but are still held by something "
                                 "outside netsim (an open file or socket); they will vanish once it closes")
            time.sleep(0.02)
    return len(present)
