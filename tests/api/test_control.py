"""The control socket's client: every failure is one line (a StateError), never a traceback.

No daemon and no namespace: a Unix socket in a private state folder plays the daemon.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from netsim.api import control
from netsim.errors import StateError


@pytest.fixture
def fake_daemon(tmp_path, monkeypatch):
    """``serve(reply)``: a Unix socket where datacenter ``fake``'s daemon would listen; each
    connection gets ``reply`` (None: no answer until the test ends)."""
    monkeypatch.setenv("NETSIM_STATE_DIR", str(tmp_path))
    os.makedirs(tmp_path / "fake")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "fake" / control.SOCKET_NAME))
    server.listen(4)
    held: list[socket.socket] = []

    def serve(reply: bytes | None) -> None:
        def loop() -> None:
            conn, _ = server.accept()
            held.append(conn)
            conn.recv(4096)
            if reply is not None:
                conn.sendall(reply)
                conn.close()
        threading.Thread(target=loop, daemon=True).start()

    yield serve
    for conn in held:
        conn.close()
    server.close()


def test_a_daemon_that_does_not_answer_in_time_is_one_line(fake_daemon) -> None:
    fake_daemon(None)
    started = time.monotonic()
    with pytest.raises(StateError, match=r"did not answer 'events' within 0.3 s; see daemon.log"):
        control.request("fake", "events", timeout=0.3)
    assert time.monotonic() - started < 2


def test_an_answer_that_is_not_json_is_one_line(fake_daemon) -> None:
    fake_daemon(b"Traceback (most recent call last):\n")
    with pytest.raises(StateError, match="not JSON"):
        control.request("fake", "ping", timeout=2)


def test_a_refusal_carries_the_daemons_message(fake_daemon) -> None:
    fake_daemon(b'{"ok": false, "error": "unknown command \'x\'"}\n')
    with pytest.raises(control.ControlError, match="unknown command"):
        control.request("fake", "x", timeout=2)
