"""The client of the daemon's control socket: JSON lines over a Unix socket in the state folder.

One request ``{"command": NAME, ARG: VALUE, ...}`` per connection, one answer line back.
The commands, their typed arguments and their refusals are registered in the daemon
(:mod:`netsim.runtime.commands`); a refusal arrives here as :class:`ControlError`.
"""

from __future__ import annotations

import json
import os
import socket

from netsim.errors import NetsimError, StateError
from netsim.state import StateDir

SOCKET_NAME = "control.sock"


class ControlError(NetsimError):
    """The daemon refused a request; the message is the daemon's."""


def request(dc_name: str, command: str, timeout: float = 10.0, **args) -> dict:
    """Send one command to datacenter ``dc_name``'s daemon and return its answer."""
    path = StateDir(dc_name).file(SOCKET_NAME)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise StateError(f"the daemon of datacenter {dc_name!r} is not running "
                             f"(no {path}); is the datacenter up?") from None
        except TimeoutError:
            raise StateError(f"the daemon of datacenter {dc_name!r} did not accept a connection within "
                             f"{timeout:g} s; see daemon.log in {os.path.dirname(path)}") from None
        data = b""
        try:
            sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise StateError(f"the daemon of datacenter {dc_name!r} did not answer {command!r} within "
                             f"{timeout:g} s; see daemon.log in {os.path.dirname(path)}") from None
        except OSError as exc:
            raise StateError(f"the connection to the daemon of datacenter {dc_name!r} failed: {exc.strerror or exc}; "
                             "is the datacenter up?") from None
    finally:
        sock.close()
    if not data:
        raise StateError(f"the daemon of datacenter {dc_name!r} closed the connection without answering")
    try:
        answer = json.loads(data)
    except ValueError:
        raise StateError(f"the daemon of datacenter {dc_name!r} answered something that is not JSON: "
                         f"{data[:80]!r}") from None
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "the daemon refused the request"))
    return answer
