"""Network namespaces, created and entered in-process.

pyroute2's ``netns.create()`` and ``IPRoute(netns=...)`` fork a helper process for
every call (about 7 ms each, measured in ``shared/reference/measured-anchors.md``).
Namespaces are per *thread* in Linux, so this module does the same work in the calling
thread with ``unshare``/``setns`` and always returns the thread to where it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import socket
from collections.abc import Iterator

from netsim.errors import NamespaceError
from netsim.kernel import procfs

CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETNS_RUN_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"  # iproute2's convention: /etc/netns/NAME/FILE is seen as /etc/FILE inside NAME
CLONE_NEWNS = 0x00020000
MS_SLAVE = 1 << 19

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(rc: int, what: str, name: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise NamespaceError(f"{what} failed for namespace {name!r}: {os.strerror(err)}", err)


def path_of(name: str) -> str:
    """Return the path under /run/netns that names namespace ``name``."""
    return os.path.join(NETNS_RUN_DIR, name)


def _ensure_run_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so bind mounts propagate."""
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    if _libc.mount(b"", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None) == 0:
        return
    _check(_libc.mount(NETNS_RUN_DIR.encode(), NETNS_RUN_DIR.encode(), b"none", MS_BIND | MS_REC, None),
           "bind-mounting /run/netns", NETNS_RUN_DIR)
    _check(_libc.mount(b"", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None),
           "sharing /run/netns", NETNS_RUN_DIR)


_run_dir_ready = False


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open as ``fd``."""
    _check(_libc.setns(fd, CLONE_NEWNET), "setns", str(fd))


def current_inode() -> int:
    """Inode of the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def root_inode() -> int | None:
    """Inode of the host's own network namespace (PID 1's), or None when PID 1 cannot be
    inspected (in some containers)."""
    return procfs.netns_inode(1)  # None: PermissionError in some containers; ENOENT without /proc/1


@contextlib.contextmanager
def _returning_home() -> Iterator[None]:
    """Run the body, then put the calling thread back in the namespace it started in."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        yield
    finally:
        try:
            setns(home)
        finally:
            os.close(home)


@contextlib.contextmanager
def entered(fd_or_name: int | str) -> Iterator[None]:
    """Run the body with the calling thread inside a namespace, then return.

    Sockets created in the body belong to that namespace for their whole life, which
    is the point: nothing else about the thread changes.
    """
    with _returning_home():
        if isinstance(fd_or_name, int):
            setns(fd_or_name)
            yield
            return
        fd = open_fd(fd_or_name)
        try:
            setns(fd)
        finally:
            os.close(fd)
        yield


def open_fd(name: str) -> int:
    """Open a namespace by name; raise NamespaceError if it does not exist."""
    try:
        return os.open(path_of(name), os.O_RDONLY)
    except FileNotFoundError:
        raise NamespaceError(f"network namespace {name!r} does not exist", errno.ENOENT) from None


def create_and_enter(name: str) -> None:
    """Create namespace ``name`` and leave the calling thread inside it.

    The caller must return the thread with ``setns`` (see :func:`create`). Raises
    NamespaceError with EEXIST if the name is taken.
    """
    global _run_dir_ready
    if not _run_dir_ready:
        _ensure_run_dir()
        _run_dir_ready = True
    path = path_of(name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise NamespaceError(f"network namespace {name!r} already exists "
                             "(run 'netsim cleanup' if a previous run crashed)", errno.EEXIST) from None
    _check(_libc.unshare(CLONE_NEWNET), "unshare", name)
    _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
           "bind-mounting", name)


@contextlib.contextmanager
def created(name: str) -> Iterator[None]:
    """Create namespace ``name`` and run the body inside it."""
    with _returning_home():
        create_and_enter(name)
        yield


def write_etc_file(name: str, filename: str, text: str) -> None:
    """Give namespace ``name`` its own ``/etc/FILENAME`` (e.g. ``hosts``), as iproute2 does:
    the file lives in ``/etc/netns/NAME/`` and :func:`enter_etc` binds it over ``/etc/``
    for the processes netsim starts there; the host's own file is never touched."""
    folder = os.path.join(ETC_NETNS_DIR, name)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{filename}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(folder, filename))


def enter_etc(name: str) -> None:
    """In a child process between fork and exec (a ``preexec_fn``): when ``/etc/netns/NAME/``
    exists, enter a private mount namespace and bind each of its files over the same file
    in ``/etc`` (what ``ip netns exec`` does), so that only this process tree sees them."""
    folder = os.path.join(ETC_NETNS_DIR, name)
    try:
        entries = sorted(e for e in os.listdir(folder) if not e.startswith("."))
    except FileNotFoundError:
        return
    if not entries:
        return
    _check(_libc.unshare(CLONE_NEWNS), "unshare (mount)", name)
    # Our mounts must not propagate back to the host's mount namespace.
    _check(_libc.mount(b"none", b"/", None, MS_SLAVE | MS_REC, None), "making / a slave mount", name)
    for entry in entries:
        target = os.path.join("/etc", entry)
        if os.path.exists(target):
            _check(_libc.mount(os.path.join(folder, entry).encode(), target.encode(), b"none", MS_BIND, None),
                   f"bind-mounting {target}", name)


def remove(name: str) -> bool:
    """Unmount and unlink namespace ``name`` (and its ``/etc/netns/NAME/`` files); return
    False if it was already gone.

    The kernel frees the namespace itself once no process, socket or mount holds it.
    """
    shutil.rmtree(os.path.join(ETC_NETNS_DIR, name), ignore_errors=True)
    path = path_of(name)
    _libc.umount2(path.encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def list_names(prefix: str = "") -> list[str]:
    """Names of the namespaces under /run/netns that start with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def inode_of(name: str) -> int | None:
    """Inode of the namespace mounted at ``name``, or None if it is not mounted."""
    try:
        st = os.stat(path_of(name))
    except FileNotFoundError:
        return None
    # An unmounted placeholder file (a crash between create and bind) is on the rootfs.
    return st.st_ino if st.st_dev != os.stat(NETNS_RUN_DIR).st_dev else None


def socket_in(name_or_fd: str | int, family: int, type: int, proto: int = 0) -> socket.socket:
    """Open a socket inside a namespace without moving anything but this thread, briefly."""
    with entered(name_or_fd):
        return socket.socket(family, type, proto)


def write_sysctl(path: str, value: str) -> None:
    """Write a /proc/sys value for the calling thread's network namespace."""
    with open(os.path.join("/proc/sys", path), "w") as f:
        f.write(value)
