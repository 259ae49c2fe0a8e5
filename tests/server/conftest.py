"""Fixtures for the metadata server tests.

- ``vm`` (function): a :class:`~server.identity.VmIdentity` ``vm1`` of availability set ``web``.
- ``parse`` (function): ``parse(raw)`` -> the requests the parser yields for ``raw``.
- ``need_root`` (function): skips the test without root, or fails it when ``CI=true``.
"""

from __future__ import annotations

import os
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

from server.http import Request, RequestParser  # noqa: E402
from server.identity import VmIdentity  # noqa: E402

VM_ID = "5d33a910-a7a0-4443-9f01-6a807801b29b"


def in_ci() -> bool:
    """Whether CI=true is set (root-only tests then fail instead of skipping)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_root() -> None:
    """Skip (or, under CI=true, fail) when not root."""
    if os.geteuid() != 0:
        reason = "needs root to create network namespaces"
        if in_ci():
            pytest.fail(f"{reason}; CI=true, so this fails instead of skipping")
        pytest.skip(reason)


@pytest.fixture
def need_root() -> None:
    """Skip the test without root; fail it instead when CI=true."""
    require_root()


def make_vm(name: str = "vm1", **kw) -> VmIdentity:
    """An identity with test defaults (availability set ``web``, a MAC, a routable address)."""
    defaults = dict(vm_id=VM_ID, node="n1", update_domain=1, fault_domain=0, availability_set="web",
                    mac="02:00:00:00:00:01", link_local="169.254.10.1", address="198.18.1.5", prefix=24)
    defaults.update(kw)
    return VmIdentity(name, **defaults)


@pytest.fixture
def vm() -> VmIdentity:
    """VM ``vm1`` of availability set ``web`` on node ``n1``."""
    return make_vm()


def parse_all(raw: bytes) -> list[Request]:
    """Every request a fresh parser yields for ``raw`` fed at once."""
    p = RequestParser()
    p.feed(raw)
    out = []
    while (r := p.next_request()) is not None:
        out.append(r)
    return out


@pytest.fixture
def parse():
    """``parse(raw)``: the requests a fresh parser yields for ``raw`` fed at once."""
    return parse_all
