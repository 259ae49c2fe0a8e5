"""Fixtures for the maintenance tests (pure: no root, no namespaces, no clock).

- ``rng`` (function): a ``random.Random`` seeded with 7, the planner's id source.
- ``planner`` (function): a :class:`~netsim.maintenance.planner.Planner` on ``rng``.
- ``repo`` (function): a :class:`~netsim.maintenance.repository.Repository` in ``tmp_path``.
"""

from __future__ import annotations

import pathlib
import random
from collections.abc import Iterator

import pytest

from netsim.maintenance.planner import Planner
from netsim.maintenance.repository import Repository


@pytest.fixture
def rng() -> random.Random:
    """A generator seeded with 7 (event ids are then the same on every run)."""
    return random.Random(7)


@pytest.fixture
def planner(rng: random.Random) -> Planner:
    """A planner with Azure's default notices and a 3 s heartbeat timeout."""
    return Planner(rng)


@pytest.fixture
def repo(tmp_path: pathlib.Path) -> Iterator[Repository]:
    """A fresh repository file ``events.db`` in the test's temporary folder."""
    r = Repository(str(tmp_path / "events.db"))
    yield r
    r.close()
