"""The next flavor is one folder: a toy flavor defined in the tests folder, served by a real
datacenter's daemon to its VMs, with no edit to any core file (needs root).

The topology says ``cloud = "toy"``; ``NETSIM_FLAVORS=toy=tests.server.toyflavor`` tells
the registry (in this process, which validates the topology, and in the daemon, which
inherits the environment) where the flavor lives. Every request starts inside a VM.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest

from netsim_imds import flavors

pytestmark = pytest.mark.root

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOPOLOGY = """
[datacenter]
cloud = "toy"
linklocal = "static"

[[node]]
name = "n1"

[[availability_set]]
name = "web"

[[vm]]
name = "web1"
availability_set = "web"

[[vm]]
name = "web2"
availability_set = "web"
"""

# Runs inside a VM: one long poll; prints "sent", then the time of the answer and its body.
LONG_POLL = """
import socket, sys, time
s = socket.create_connection(("169.254.169.254", 80), timeout=60)
s.sendall(b"GET /toy/wait?timeout=%s HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\nConnection: close\\r\\n\\r\\n")
print("sent", flush=True)
data = b""
while chunk := s.recv(4096):
    data += chunk
print(time.time(), data.split(b"\\r\\n\\r\\n", 1)[1].decode(), flush=True)
"""

WHOAMI = """
import socket
s = socket.create_connection(("169.254.169.254", 80), timeout=10)
s.sendall(b"GET /toy/whoami HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.split(b"\\r\\n", 1)[0].decode(), data.split(b"\\r\\n\\r\\n", 1)[1].decode())
"""


@pytest.fixture
def toy_dc(datacenter_factory, monkeypatch):
    """A running datacenter of two VMs whose metadata service is the toy flavor."""
    monkeypatch.setenv(flavors.ENV, "toy=tests.server.toyflavor")
    # The daemon imports tests.server.toyflavor whatever its working folder.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    dc = datacenter_factory(TOPOLOGY)
    assert dc.topology.cloud == "toy"
    return dc


def long_poll(dc, vm: str, timeout: float) -> subprocess.Popen:
    proc = dc.popen(vm, [sys.executable, "-c", LONG_POLL % timeout], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "sent"
    time.sleep(0.3)  # the server has parked it
    return proc


def answer(proc: subprocess.Popen) -> tuple[float, str]:
    out, _ = proc.communicate(timeout=30)
    when, body = out.strip().split(" ", 1)
    return float(when), body


def test_the_toy_flavor_answers_each_vm_with_its_name(toy_dc) -> None:
    for vm in ("web1", "web2"):
        out = toy_dc.run(vm, [sys.executable, "-c", WHOAMI], capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["HTTP/1.1", "200", "OK", vm]


def test_a_long_poll_returns_soon_after_netsim_event_add(toy_dc) -> None:
    proc = long_poll(toy_dc, "web2", timeout=30)
    netsim = os.path.join(os.path.dirname(sys.executable), "netsim")
    added = time.time()
    subprocess.run([netsim, "event", "add", "web1", "--type", "Reboot", "--in", "600", "--name", toy_dc.name],
                   check=True, capture_output=True, timeout=30)
    when, body = answer(proc)
    # web2 polls the node web1 is on (one node): the node's events changed.
    assert body.startswith("changed ")
    assert when - added < 2.0, f"answered {when - added:.2f} s after the event was added"


def test_a_long_poll_times_out_at_its_deadline_without_an_event(toy_dc) -> None:
    started = time.time()
    proc = long_poll(toy_dc, "web1", timeout=1.5)
    when, body = answer(proc)
    assert body == "timeout" and 1.4 <= when - started < 4.0
