"""Fixtures for the metadata server tests.

- ``vm`` (function): a :class:`~netsim_imds.identity.VmIdentity` ``vm1`` of availability set ``web``.
- ``parse`` (function): ``parse(raw)`` -> the requests the parser yields for ``raw``.
- ``need_root`` (function): skips the test without root, or fails it when ``CI=true``.
"""

from __future__ import annotations


import pytest

from tests.server.support import make_vm, parse_all, require_root
from netsim_imds.identity import VmIdentity


@pytest.fixture
def need_root() -> None:
    """Skip the test without root; fail it instead when CI=true."""
    require_root()


@pytest.fixture
def vm() -> VmIdentity:
    """VM ``vm1`` of availability set ``web`` on node ``n1``."""
    return make_vm()


@pytest.fixture
def parse():
    """``parse(raw)``: the requests a fresh parser yields for ``raw`` fed at once."""
    return parse_all
