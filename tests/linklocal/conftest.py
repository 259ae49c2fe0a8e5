"""Fixtures for the link-local tests that use real namespaces.

Namespaces are named ``nsim-lltest-<pid>-<n>-...`` and removed by the fixtures'
finalizers; a test that needs root skips without it, and fails instead under CI=true.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from netsim.linklocal import RFC_TIMERS, Timers
from netsim.linklocal.driver import LinkLocalDriver
from netsim.harness.testbed import Testbed

FAST: Timers = RFC_TIMERS.scaled(5)
"""The timer profile of namespace tests: a clean claim takes 0.8-1.4 s."""

_labs = itertools.count()


@pytest.fixture
def needs_root() -> None:
    """Skip (or, under CI=true, fail) unless running as root."""
    if os.geteuid() != 0:
        reason = "needs root to create network namespaces"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: not skipping)")
        pytest.skip(reason)


@pytest.fixture
def make_lab(needs_root: None) -> Iterator[Callable[..., Testbed]]:
    """Factory ``make_lab(nodes, vms_per_node)`` -> a built :class:`~netsim.harness.testbed.Testbed`; all removed at teardown."""
    labs: list[Testbed] = []

    def make(nodes: int = 1, vms_per_node: int = 2) -> Testbed:
        lab = Testbed(f"nsim-lltest-{os.getpid()}-{next(_labs)}-", nodes, vms_per_node)
        labs.append(lab)
        return lab.build()

    yield make
    for lab in labs:
        lab.close()


class RunningDriver:
    """A LinkLocalDriver served by a background thread; ``d`` is the driver."""

    def __init__(self, **kwargs) -> None:
        self.d = LinkLocalDriver(**kwargs)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.d.run(self._stop)
        except BaseException as e:  # surfaced by stop() so a loop crash fails the test
            self.error = e

    def stop(self) -> None:
        """Stop the loop, close the driver and re-raise anything the loop raised."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(5)
            self.d.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def run_driver(needs_root: None) -> Iterator[Callable[..., RunningDriver]]:
    """Factory ``run_driver(**LinkLocalDriver kwargs)`` (fast timers by default), stopped at teardown."""
    running: list[RunningDriver] = []

    def start(**kwargs) -> RunningDriver:
        kwargs.setdefault("timers", FAST)
        r = RunningDriver(**kwargs)
        running.append(r)
        return r

    yield start
    for r in running:
        r.stop()
