"""The rule that no emulated traffic starts in the host's own network namespace.

The host running netsim may sit in a cloud whose real metadata service answers at
169.254.169.254 in the host's namespace. Every helper that sends traffic goes through
here first and refuses unless it is about to run inside a namespace netsim created.
"""

from __future__ import annotations

import os
import socket

from netsim import names, netns
from netsim.errors import RootNamespaceError


def require_emulated_namespace() -> None:
    """Raise RootNamespaceError unless the calling thread is inside a netsim namespace."""
    here = netns.current_inode()
    ours = {netns.inode_of(n) for n in netns.list_names(names.PREFIX)}
    # Being in a namespace netsim created is what counts; PID 1's, when it can be read,
    # is checked too in case someone bind-mounted the host's namespace under our prefix.
    if here not in ours or here == netns.root_inode():
        raise RootNamespaceError(
            "refusing to send traffic from the host's own network namespace: run this inside an "
            "emulated host, e.g. 'netsim exec web1 -- CMD', or pass a namespace to the helper")


def require_project_namespace(ns_name: str) -> None:
    """Raise RootNamespaceError unless ``ns_name`` is a netsim namespace other than the host's."""
    if names.dc_of_namespace(ns_name) is None:
        raise RootNamespaceError(f"{ns_name!r} is not a netsim namespace (they start with {names.PREFIX!r}); "
                                 "netsim sends traffic only from namespaces it created")
    inode = netns.inode_of(ns_name)
    if inode is None or inode == netns.root_inode():
        raise RootNamespaceError(f"namespace {ns_name!r} does not exist or is the host's own namespace")


def emulated_socket(ns_name: str, family: int, type: int, proto: int = 0) -> socket.socket:
    """A socket opened inside netsim namespace ``ns_name``, checked by :func:`require_project_namespace`."""
    require_project_namespace(ns_name)
    sock = netns.socket_in(ns_name, family, type, proto)
    return sock


def preexec_into(ns_name: str):
    """A ``preexec_fn`` that moves a child process into ``ns_name`` before it runs.

    The namespace is opened in the parent (so errors surface there) and entered in the
    child between fork and exec; the parent never changes namespace.
    """
    require_project_namespace(ns_name)
    fd = netns.open_fd(ns_name)

    def enter() -> None:
        netns.setns(fd)
        os.close(fd)

    return fd, enter
