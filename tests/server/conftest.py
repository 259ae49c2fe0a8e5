"""Fixtures for the metadata server tests.

- ``vm`` (function): a :class:`~server.identity.VmIdentity` ``vm1`` of availability set ``web``.
- ``parse`` (function): ``parse(raw)`` -> the requests the parser yields for ``raw``.
- ``need_root`` (function): skips the test without root, or fails it when ``CI=true``.
"""

from __future__ import annotations

import pathlib
import sys

# tests/ has no __init__.py, so pytest may put tests/ itself on sys.path, where the
# directory tests/server would shadow the real package as a namespace package. Put the
# repository first: a regular package anywhere on the path wins over a namespace one.
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
if "server" in sys.modules and getattr(sys.modules["server"], "__file__", None) is None:
    del sys.modules["server"]

import pytest  # noqa: E402

from server_testlib import make_vm, parse_all, require_root  # noqa: E402
from server.identity import VmIdentity  # noqa: E402


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
