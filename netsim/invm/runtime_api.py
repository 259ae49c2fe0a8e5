"""HAProxy's runtime API (the ``stats socket``): a client and the parsers of its answers.

In non-interactive mode HAProxy reads one command line, writes the answer and closes
the connection, so a command is: connect, send ``CMD\\n``, read to EOF. The same
client speaks to a UNIX socket (the harness) or to a TCP address (a VM draining itself:
``198.19.255.10:9999``). Parsers are pure and take the answer's text.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from netsim.invm.errors import RuntimeApiError

Target = str | tuple[str, int]
SERVER_STATES = ("ready", "drain", "maint")


@dataclass(frozen=True)
class ServerStatus:
    """One server line of ``show stat``.

    ``status`` is HAProxy's: ``UP``, ``DOWN``, ``DRAIN``, ``MAINT``, ``no check``, or a
    transition such as ``UP 1/2``. ``sessions`` is the current session count (scur),
    ``total`` the sessions since start (stot).
    """

    backend: str
    name: str
    status: str
    sessions: int
    total: int
    weight: int
    check: str

    @property
    def out_of_rotation(self) -> bool:
        """True when HAProxy sends the server no new session: drained, in maintenance, or
        down (``DRAIN``, ``MAINT``, ``DOWN``, ``NOLB``, and their ``x/y`` transitions,
        except ``UP x/y`` which is still up)."""
        return not self.status.startswith(("UP", "no check"))


def parse_target(text: str) -> Target:
    """``HOST:PORT`` -> (host, port); anything with a ``/`` is a UNIX socket path."""
    if "/" in text:
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"runtime API address {text!r}: give HOST:PORT or a socket path")
    return host, int(port)


def command(target: Target, line: str, timeout: float = 2.0) -> str:
    """Send one command to the runtime API at ``target`` and return its answer."""
    if "\n" in line:
        raise ValueError("one command per call; it must not contain a newline")
    family = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    chunks = []
    try:
        sock.connect(target)
        sock.sendall(line.encode() + b"\n")
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except OSError as exc:
        raise RuntimeApiError(f"HAProxy runtime API at {_where(target)}: {line!r}: {exc}") from None
    finally:
        sock.close()
    return b"".join(chunks).decode(errors="replace")


def _where(target: Target) -> str:
    return target if isinstance(target, str) else f"{target[0]}:{target[1]}"


def parse_stat(text: str) -> list[ServerStatus]:
    """The server lines of a ``show stat`` CSV answer (frontends and backends left out)."""
    lines = text.strip("\n").splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RuntimeApiError(f"unexpected 'show stat' answer: {text[:200]!r}")
    rows = csv.DictReader(io.StringIO("\n".join([lines[0][2:]] + lines[1:])))
    out = []
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        out.append(ServerStatus(backend=row["pxname"], name=row["svname"], status=row.get("status", ""),
                                sessions=int(row.get("scur") or 0), total=int(row.get("stot") or 0),
                                weight=int(row.get("weight") or 0), check=row.get("check_status", "")))
    return out


def show_stat(target: Target, backend: str | None = None, timeout: float = 2.0) -> dict[str, ServerStatus]:
    """Servers by name (of ``backend`` only, when given)."""
    found = parse_stat(command(target, "show stat", timeout))
    return {s.name: s for s in found if backend is None or s.backend == backend}


def set_server_state(target: Target, backend: str, server: str, state: str, timeout: float = 2.0) -> None:
    """``set server BACKEND/SERVER state ready|drain|maint``; RuntimeApiError if refused."""
    if state not in SERVER_STATES:
        raise ValueError(f"server state {state!r}: use one of {', '.join(SERVER_STATES)}")
    answer = command(target, f"set server {backend}/{server} state {state}", timeout).strip()
    if answer:  # success is an empty answer; errors are a line of text
        raise RuntimeApiError(f"HAProxy refused 'set server {backend}/{server} state {state}': {answer}")


# srv_admin_state bits of ``show servers state`` (HAProxy's SRV_ADMF_* flags).
ADMIN_FLAGS = {0x01: "FMAINT", 0x02: "IMAINT", 0x04: "CMAINT", 0x08: "FDRAIN", 0x10: "IDRAIN",
               0x20: "RMAINT", 0x40: "HMAINT"}


def admin_flags(value: str | int) -> set[str]:
    """The names of the bits set in a ``srv_admin_state`` value (``FDRAIN``: forced drain)."""
    bits = int(value)
    return {name for bit, name in ADMIN_FLAGS.items() if bits & bit}


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """``show servers state``: one dict per server, keyed by the header's field names
    (``srv_name``, ``srv_op_state``, ``srv_admin_state``, ...)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("# be_id")), None)
    if at is None:  # the line before the header is the format version ("1")
        raise RuntimeApiError(f"unexpected 'show servers state' answer: {text[:200]!r}")
    names = lines[at][2:].split()
    return [dict(zip(names, ln.split())) for ln in lines[at + 1:] if not ln.startswith("#")]


def set_server_state_until_taken(target: Target, backend: str, server: str, state: str,
                                 say: Callable[[str], None], interval: float = 1.0) -> None:
    """:func:`set_server_state`, retried every ``interval`` seconds until HAProxy takes it
    (an in-VM agent must not give up on its load balancer); ``say`` reports each try."""
    while True:
        try:
            set_server_state(target, backend, server, state)
            say(f"set {state}")
            return
        except RuntimeApiError as exc:
            say(f"set {state} failed: {exc}; retrying")
            time.sleep(interval)
