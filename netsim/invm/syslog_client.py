"""Syslog lines (RFC 5424 and RFC 3164) and a UDP sender, standard library only.

Formatting is pure: time, host name and process id are arguments. :class:`UdpSyslog`
is the thin driver (RFC 5426: one message per datagram).
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

FACILITIES = {"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "local0": 16, "local1": 17,
              "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23}
SEVERITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}
MAX_DATAGRAM = 2048  # RFC 5426 section 3.2: receivers SHOULD accept 2048 octets
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def priority(facility: str, severity: str) -> int:
    """PRI = facility * 8 + severity (RFC 5424 section 6.2.1)."""
    try:
        return FACILITIES[facility] * 8 + SEVERITIES[severity]
    except KeyError as exc:
        raise ValueError(f"unknown syslog facility or severity {exc.args[0]!r}; facilities: "
                         f"{', '.join(FACILITIES)}; severities: {', '.join(SEVERITIES)}") from None


def _field(value: str | None, limit: int) -> str:
    """A header field: PRINTUSASCII (33..126) up to ``limit`` octets, or the NILVALUE ``-``
    (RFC 5424 section 6.2)."""
    if not value:
        return "-"
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)
    return cleaned[:limit]


def rfc5424(message: str, *, now: float, hostname: str, app: str, procid: int | str | None = None,
            msgid: str | None = None, facility: str = "user", severity: str = "notice") -> bytes:
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`` (RFC 5424 section 6)."""
    stamp = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = (f"<{priority(facility, severity)}>1 {stamp} {_field(hostname, 255)} {_field(app, 48)} "
              f"{_field(str(procid) if procid is not None else None, 128)} {_field(msgid, 32)} -")
    return _cap(f"{header} {message}".encode())


def rfc3164(message: str, *, now: float, hostname: str, tag: str, pid: int | None = None,
            facility: str = "user", severity: str = "notice") -> bytes:
    """``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`` (RFC 3164 section 4.1; UTC time)."""
    t = time.gmtime(now)
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    tag = _field(tag, 32)  # section 4.1.3: the TAG is at most 32 characters
    head = f"<{priority(facility, severity)}>{stamp} {_field(hostname, 255)} {tag}"
    return _cap(f"{head}{f'[{pid}]' if pid is not None else ''}: {message}".encode())


def _cap(data: bytes) -> bytes:
    return data[:MAX_DATAGRAM]


def parse_target(text: str, default_port: int = 514) -> tuple[str, int]:
    """``HOST[:PORT]`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"syslog target {text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class UdpSyslog:
    """Sends syslog lines to ``host:port`` over UDP, one message per datagram (RFC 5426)."""

    def __init__(self, host: str, port: int = 514, *, hostname: str, app: str, rfc: str = "5424",
                 facility: str = "user", severity: str = "notice") -> None:
        if rfc not in ("5424", "3164"):
            raise ValueError(f"syslog format {rfc!r}: use 5424 or 3164")
        priority(facility, severity)  # check early
        self.target = (host, port)
        self.hostname, self.app, self.rfc = hostname, app, rfc
        self.facility, self.severity = facility, severity
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def format(self, message: str, now: float, msgid: str | None = None) -> bytes:
        """The datagram for ``message`` at time ``now``."""
        if self.rfc == "5424":
            return rfc5424(message, now=now, hostname=self.hostname, app=self.app, procid=os.getpid(),
                           msgid=msgid, facility=self.facility, severity=self.severity)
        return rfc3164(message, now=now, hostname=self.hostname, tag=self.app, pid=os.getpid(),
                       facility=self.facility, severity=self.severity)

    def send(self, message: str, msgid: str | None = None) -> None:
        """Send one message now."""
        self._sock.sendto(self.format(message, time.time(), msgid), self.target)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

