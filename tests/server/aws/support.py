"""Helpers of the AWS tests that run inside a real datacenter's VMs (every request starts
inside a namespace netsim created)."""

from __future__ import annotations

import calendar
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from netsim.kernel.rtnl import Rtnl
from netsim.model import names
from tests.server.support import in_ci

IMDS = "http://169.254.169.254"
NETSIM = os.path.join(os.path.dirname(sys.executable), "netsim")
NO_PROXY = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
CLIENTS = pathlib.Path(__file__).resolve().parents[3] / ".venv-clients" / "bin" / "python"
"""The interpreter of the real clients' own environment (``scripts/setup`` makes it), never netsim's."""
EVENT_TIME = "%d %b %Y %H:%M:%S GMT"
"""``21 Jan 2019 09:00:43 GMT``: the times of scheduled events (reference 3.2)."""


def curl(dc, vm: str, path: str, *args: str) -> str:
    """The body of ``GET path`` from inside ``vm`` (IMDSv1), "" when nothing came."""
    out = dc.run(vm, ["curl", "-s", "--max-time", "5", *args, f"{IMDS}{path}"], env=NO_PROXY)
    return out.stdout


def status(dc, vm: str, path: str, *args: str) -> str:
    """The HTTP status of ``GET path`` from inside ``vm`` (``000`` when no answer came)."""
    return curl(dc, vm, path, "-o", "/dev/null", "-w", "%{http_code}", *args)


def wait_until(predicate, timeout: float, what: str):
    """``predicate()``'s first true value, polled every 0.1 s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def netsim(dc, *args: str) -> str:
    """``netsim ARGS --name DC``'s stdout (CalledProcessError if it fails)."""
    return subprocess.run([NETSIM, *args, "--name", dc.name], check=True, capture_output=True, text=True,
                          timeout=30).stdout


def events_of(dc, vm: str, which: str, *args: str) -> list[dict]:
    """``events/maintenance/scheduled`` or ``history`` of ``vm``, as a list (``args`` go to curl)."""
    return json.loads(curl(dc, vm, f"/latest/meta-data/events/maintenance/{which}", *args) or "[]")


def event_time(text: str) -> float:
    """Epoch seconds of a scheduled event's time."""
    return float(calendar.timegm(time.strptime(text, EVENT_TIME)))


def link_up(dc, vm: str) -> bool:
    """Whether ``vm``'s eth0 is up (a stopped VM's is down)."""
    with Rtnl.in_namespace(dc.namespace(vm)) as sock:
        return bool(sock.link_state(names.NIC_INDEX)[1])


def clients_with(*modules: str) -> str:
    """:data:`CLIENTS` if it imports ``modules``; else skip the test (fail it under CI),
    saying that ``scripts/setup`` installs them."""
    if not CLIENTS.exists() or subprocess.run([str(CLIENTS), "-c", "import " + ", ".join(modules)],
                                              capture_output=True).returncode != 0:
        reason = f"{', '.join(modules)} missing from {CLIENTS.parent}: run scripts/setup (it installs them there)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CLIENTS)
