"""Fixtures for the scenario tests.

- ``spawn`` (function): ``spawn(dc, host, module, *args, log=name)`` starts
  ``python -m MODULE ARGS`` inside ``host`` of datacenter ``dc`` with its output in
  ``tmp_path/name``; every process is stopped by its PID after the test (SIGTERM, then
  SIGKILL), before the datacenter fixture tears the namespaces down.
- ``stopper`` (function): ``stopper(obj)`` registers anything with a ``stop()`` method
  (a syslog collector, a load balancer) to be stopped after the test.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from netsim.harness.procs import stop

REPO = pathlib.Path(__file__).resolve().parents[2]


class Spawned:
    """A started program and its log file."""

    def __init__(self, proc: subprocess.Popen, log: pathlib.Path) -> None:
        self.proc, self.log = proc, log

    @property
    def pid(self) -> int:
        """The program's PID."""
        return self.proc.pid

    def output(self) -> str:
        """What it wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float) -> int:
        """Wait for it to exit by itself; returns its status."""
        return self.proc.wait(timeout)


@pytest.fixture
def stopper(datacenter_factory):
    """``stopper(obj)``: call ``obj.stop()`` after the test (before the datacenter goes)."""
    objs = []
    yield objs.append
    for obj in reversed(objs):
        obj.stop()


@pytest.fixture
def spawn(datacenter_factory, tmp_path, stopper):
    """``spawn(dc, host, module, *args, log=None)``: run a scenario module inside a host."""
    def start(dc, host: str, module: str, *args: str, log: str | None = None) -> Spawned:
        path = tmp_path / (log or f"{module.rsplit('.', 1)[-1]}-{host}.log")
        with open(path, "ab") as out:
            proc = dc.popen(host, [sys.executable, "-m", module, *args], cwd=str(REPO),
                            stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        spawned = Spawned(proc, path)

        class _Stop:
            @staticmethod
            def stop() -> None:
                stop(proc)
        stopper(_Stop)
        return spawned
    return start
