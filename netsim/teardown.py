"""Removing namespaces and waiting until the kernel has really destroyed them.

Unmounting a namespace returns at once; the kernel frees it later, in batches, once no
process, socket or mount holds it. Every namespace is given an id in the host's
namespace first; the kernel drops the id when it destroys the namespace, so the wait
ends exactly when the last one is gone rather than after a guessed delay.
"""

from __future__ import annotations

import os
import signal
import time

from netsim import netns
from netsim.errors import NamespaceError, StateError
from netsim.rtnl import MAX_BATCH, Rtnl, assigned_nsids, nsids


def processes_in(inodes: set[int]) -> list[int]:
    """PIDs of the processes whose network namespace is one of ``inodes``."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def end_processes(pids: list[int], timeout: float = 5.0) -> None:
    """SIGKILL ``pids`` and wait until each has exited (zombies hold no namespace)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        break
            except (FileNotFoundError, ProcessLookupError):
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
        end_processes(processes_in(inodes))
        for name in present:
            netns.remove(name)
        deadline = time.monotonic() + timeout
        while ids := ids & assigned_nsids(root):
            if time.monotonic() > deadline:
                raise StateError(f"{len(ids)} namespaces were unmounted but are still held by something "
                                 "outside netsim (an open file or socket); they will vanish once it closes")
            time.sleep(0.02)
    return len(present)
