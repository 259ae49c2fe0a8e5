"""Helpers shared by the metadata server tests (a module name no other test uses)."""

from __future__ import annotations

import os

import pytest

from netsim_imds.azure.events import EVENTS
from netsim_imds.events import Event
from netsim_imds.http import Request, RequestParser
from netsim_imds.identity import VmIdentity

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


def installed(path: "os.PathLike[str] | str", what: str) -> str:
    """``path`` (a client scripts/setup installs) if it exists; else skip, or under CI=true
    fail, saying that scripts/setup installs ``what``."""
    if not os.path.exists(path):
        reason = f"{path} is missing: run scripts/setup (it installs {what})"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return str(path)


def make_vm(name: str = "vm1", **kw) -> VmIdentity:
    """An identity with test defaults (availability set ``web``, a MAC, a routable address)."""
    defaults = dict(vm_id=VM_ID, node="n1", update_domain=1, fault_domain=0, availability_set="web",
                    mac="02:00:00:00:00:01", link_local="169.254.10.1", address="198.18.1.5", prefix=24)
    defaults.update(kw)
    return VmIdentity(name, **defaults)


def parse_all(raw: bytes) -> list[Request]:
    """Every request a fresh parser yields for ``raw`` fed at once."""
    p = RequestParser()
    p.feed(raw)
    out = []
    while (r := p.next_request()) is not None:
        out.append(r)
    return out


def azure_event(event_id: str, event_type: str, resources: tuple[str, ...], not_before: float, created: float,
                *, duration_s: int | None = None, **kw) -> Event:
    """An :class:`~netsim_imds.events.Event` written in Azure's words: ``event_type`` is an
    ``EventType`` (``Reboot``, ``Freeze``...), ``duration_s`` -1 or None when unknown."""
    return Event(event_id, EVENTS.kind_of(event_type), resources, not_before, created,
                 duration_s=None if duration_s == -1 else duration_s, **kw)
