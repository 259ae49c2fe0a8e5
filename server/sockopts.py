"""Per-connection socket options that a response carries (the driver's side of
:attr:`netsim_imds.response.Response.socket_options`).

AWS sends its IMDSv2 token reply with IP TTL = the instance's hop limit, so that the reply
dies on a hop too many (``shared/reference/cloud-metadata-apis.md`` section 3). The option
is set before that answer's bytes are written, and the connection's own values come back
before a later answer, but only once every byte written under the option has left and been
acknowledged: the kernel reads IP_TTL when it (re)transmits a segment, so a reply restored
too early would be retransmitted with the normal TTL and reach the client after all, a
few hundred milliseconds late. Until then later answers keep the option too, which changes
nothing for a client the first answer reached (same path, same hops).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import struct
import termios

from netsim_imds.response import SocketOption

log = logging.getLogger("netsim.server")

_OUTQ = b"\0\0\0\0"


class Applied(dict):
    """``{(level, option): value before}`` of the options a connection's answers changed
    (empty: none in force), with what stays for the connection's life: the socket they are
    set on (``sock``), the connection's own value of each option (``own``: asked of the
    kernel once) and the value last set (``current``). Call :meth:`close` when the
    connection is lost.

    ``sock`` is a duplicate of the transport's descriptor, made once: uvloop's
    ``get_extra_info("socket")`` answers an object that builds (and detaches) a new
    ``socket.socket`` on every ``getsockopt``/``setsockopt``, a third of a token reply's
    Python (an AWS token PUT and the GET after it would pay four)."""

    __slots__ = ("sock", "owned", "own", "current")

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self.own: dict[tuple[int, int], int] = {}
        self.current: dict[tuple[int, int], int] = {}
        pseudo = transport.get_extra_info("socket")
        self.sock, self.owned = pseudo, False
        if pseudo is None:
            return
        try:
            self.sock = pseudo.dup()  # uvloop's and asyncio's transport sockets both have it
            self.owned = True
        except OSError:  # out of descriptors: the transport's own object still works, slower
            pass

    def close(self) -> None:
        """Close the duplicate descriptor (the connection is lost; nothing is set after it)."""
        if self.owned:
            self.owned = False
            self.sock.close()


def apply(transport: asyncio.Transport, options: tuple[SocketOption, ...], applied: Applied | None) -> Applied:
    """Set ``options`` on the transport's socket; returns what to restore (``applied``, or a
    new :class:`Applied`, keeping the first saved value of each option)."""
    saved = applied if applied is not None else Applied(transport)
    sock, own, current = saved.sock, saved.own, saved.current
    if sock is None:  # a transport without a socket (none of ours): the answer goes without them
        return saved
    for level, option, value in options:
        key = (level, option)
        try:
            if key not in saved:
                if key not in own:
                    own[key] = current[key] = sock.getsockopt(level, option)
                saved[key] = own[key]
            if current.get(key) != value:  # already in force (a reply not yet acknowledged): no call
                sock.setsockopt(level, option, value)
                current[key] = value
        except OSError as exc:  # the answer still goes out; the log says it went without the option
            log.error("cannot set socket option (%d, %d) = %d on a client connection: %s", level, option, value,
                      exc.strerror)
    return saved


def unacknowledged(transport: asyncio.Transport, sock=None) -> int:
    """Bytes written to the connection and not yet acknowledged by its peer: what the
    transport still buffers plus the kernel's send queue (TIOCOUTQ = SIOCOUTQ on TCP);
    ``sock``: the transport's socket, if the caller holds it."""
    buffered = transport.get_write_buffer_size()
    sock = sock if sock is not None else transport.get_extra_info("socket")
    if sock is None:
        return buffered
    (queued,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, _OUTQ))
    return buffered + queued


def restore_if_sent(transport: asyncio.Transport, applied: Applied) -> bool:
    """Put the saved values back if everything written under them is acknowledged; False
    (nothing changed) otherwise. Emptied, ``applied`` keeps its socket for the next reply."""
    sock = applied.sock
    if sock is None:
        return False
    current = applied.current
    try:
        if unacknowledged(transport, sock):
            return False
        for key, value in applied.items():
            sock.setsockopt(key[0], key[1], value)
            current[key] = value
    except OSError:
        return False
    applied.clear()
    return True
