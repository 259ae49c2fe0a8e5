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

class Applied(dict):
    """``{(level, option): value before}`` of the options a connection's answers changed,
    and the socket they were set on (``sock``): asked of the transport once, since uvloop
    builds a new socket object on every ``get_extra_info("socket")`` (an AWS token PUT and
    the GET after it would each pay two)."""

    __slots__ = ("sock",)


def _socket(transport: asyncio.Transport):
    return transport.get_extra_info("socket")


def apply(transport: asyncio.Transport, options: tuple[SocketOption, ...], applied: Applied | None) -> Applied:
    """Set ``options`` on the transport's socket; returns what to restore (``applied``, or a
    new :class:`Applied`, keeping the first saved value of each option)."""
    if applied is None:
        saved = Applied()
        saved.sock = _socket(transport)
    else:
        saved = applied
    sock = saved.sock
    for level, option, value in options:
        try:
            if (level, option) not in saved:
                saved[(level, option)] = sock.getsockopt(level, option)
            sock.setsockopt(level, option, value)
        except OSError as exc:  # the answer still goes out; the log says it went without the option
            log.error("cannot set socket option (%d, %d) = %d on a client connection: %s", level, option, value,
                      exc.strerror)
    return saved


def unacknowledged(transport: asyncio.Transport, sock=None) -> int:
    """Bytes written to the connection and not yet acknowledged by its peer: what the
    transport still buffers plus the kernel's send queue (TIOCOUTQ = SIOCOUTQ on TCP);
    ``sock``: the transport's socket, if the caller holds it."""
    buffered = transport.get_write_buffer_size()
    sock = sock if sock is not None else _socket(transport)
    if sock is None:
        return buffered
    (queued,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))
    return buffered + queued


def restore_if_sent(transport: asyncio.Transport, applied: Applied) -> bool:
    """Put the saved values back if everything written under them is acknowledged; False
    (nothing changed) otherwise."""
    try:
        sock = getattr(applied, "sock", None) or _socket(transport)
        if unacknowledged(transport, sock):
            return False
        for (level, option), value in applied.items():
            sock.setsockopt(level, option, value)
    except OSError:
        return False
    return True
