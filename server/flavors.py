"""The flavor seam: what a cloud's metadata API is to the server, and the registry of them.

A **flavor** (Azure, later AWS or GCE) is the sans-IO application behind the core's HTTP
parser, serializer and driver: :meth:`Flavor.handle` takes a parsed request, the caller
(the VM the driver resolved from where the request entered the node, None when the peer
maps to no VM), the node's events and the time, and returns

- a :class:`~netsim_imds.response.Response` to send now (it may carry per-connection
  socket options, e.g. AWS's IMDSv2 token reply with IP TTL = hop limit), or
- a :class:`Wait`: park this request, without a thread, until the caller's node view
  changes (the driver is told by :meth:`~netsim_imds.driver.MetadataServer.notify`) or
  the deadline passes, then call ``wait.resume(view, now)`` -- the flavor again -- which
  returns a response or another wait. GCE's ``wait_for_change`` is written this way.

A flavor whose answers never carry ``cache_until`` (AWS: rate-limited, every request is
counted) may say so with a class attribute ``keeps_answers = False``: the driver then
never looks for a kept answer (:mod:`netsim_imds.answers`) nor reads the node's
incarnation for one.

The core never names a flavor; a flavor registers itself by name, as aioquic registers
congestion controls (``register("azure", AzureFlavor)`` in ``netsim_imds/azure``). A name is
resolved, in order:

1. a flavor registered already in this process (:func:`register`);
2. ``NETSIM_FLAVORS``: ``name=module`` or ``name=module:attr`` entries separated by
   commas. ``module`` is imported; with ``attr`` that attribute is the factory, without
   it the module must :func:`register` the name when imported. The daemon inherits the
   variable, so a flavor outside this package (a test's toy flavor) is served by setting
   it, with no edit here;
3. the entry points of group ``netsim_imds.flavors`` of installed distributions (``name =
   "package.module:Factory"``), for flavors shipped as packages;
4. a subpackage of ``netsim_imds`` of that name (the flavors shipped here), imported so
   that it registers itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Protocol, Union

from netsim_imds.errors import NetsimError
from netsim_imds.events import EventView
from netsim_imds.identity import VmIdentity
from netsim_imds.request import Request
from netsim_imds.response import Response

ENV = "NETSIM_FLAVORS"
ENTRY_POINT_GROUP = "netsim_imds.flavors"
DEFAULT_FLAVOR = "azure"
"""The flavor a datacenter serves when its topology names none (``[datacenter] cloud``)."""

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")

Resume = Callable[[EventView, float], "Union[Response, Wait]"]
"""``resume(view, now)``: the flavor called again for a parked request."""


@dataclass(frozen=True)
class Wait:
    """Park the request until its node's events change or ``deadline`` (epoch seconds).

    The driver then calls ``resume(view, now)``: on a change with ``now`` before the
    deadline, at the deadline with ``now >= deadline`` (then it must answer: a wait
    returned there is answered 500). ``resume`` closes over what the first call knew (the
    request, the caller, the value it waits to see change); it may return another
    :class:`Wait` to go on waiting (a change that does not concern this request).

    ``watch``: the names (VMs, availability sets) whose events the answer depends on, when
    the flavor knows them (GCE's keys speak of the caller alone): a change the driver is
    told concerns other names does not wake it (a walk of 200 VMs then wakes 200 parked
    requests, not every parked request of every node). None: every change of the node.
    """

    deadline: float
    resume: Resume
    watch: "frozenset[str] | None" = None


Answer = Union[Response, Wait]
"""What :meth:`Flavor.handle` returns."""


class Flavor(Protocol):
    """One node's metadata API of a cloud (sans-IO: no clock, no socket)."""

    def handle(self, request: Request, caller: VmIdentity | None, view: EventView, now: float) -> Answer:
        """Answer ``request`` from ``caller`` (None: not a VM of this node) at time ``now``."""
        ...


FlavorFactory = Callable[[], Flavor]
"""Makes the flavor of one node (each node has its own, e.g. its own rate limiter)."""


class FlavorError(NetsimError):
    """A flavor name could not be resolved or registered (names the known flavors)."""


_registry: dict[str, FlavorFactory] = {}


def register(name: str, factory: FlavorFactory) -> None:
    """Register ``factory`` under ``name`` (lower case, at most 32 characters); registering
    the same factory again is a no-op, another one under a taken name an error."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FlavorError(f"flavor name {name!r}: use 1 to 32 lower-case letters, digits, '-' or '_', "
                          "starting with a letter")
    if not callable(factory):
        raise FlavorError(f"flavor {name!r}: the factory must be callable (a class or a function)")
    known = _registry.get(name)
    if known is not None and known is not factory:
        raise FlavorError(f"flavor {name!r} is already registered (by {_where(known)})")
    _registry[name] = factory


def unregister(name: str) -> None:
    """Forget flavor ``name`` (tests, reloading a plugin); unknown names are ignored."""
    _registry.pop(name, None)


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _env_entries() -> dict[str, str]:
    out = {}
    for item in os.environ.get(ENV, "").split(","):
        name, sep, target = item.strip().partition("=")
        if item.strip() and (not sep or not name.strip() or not target.strip()):
            raise FlavorError(f"{ENV}: entry {item.strip()!r} is not name=module or name=module:attr")
        if sep:
            out[name.strip()] = target.strip()
    return out


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _builtin() -> list[str]:
    # Every subpackage of netsim_imds is a flavor (the core is flat modules).
    return sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)]) if m.ispkg)


def names() -> list[str]:
    """Every flavor name that :func:`resolve` may find (registered, ``NETSIM_FLAVORS``,
    entry points, built in), sorted; none is imported to list them."""
    return sorted({*_registry, *_env_entries(), *_entry_points(), *_builtin()})


def _load(name: str, target: str, source: str) -> FlavorFactory:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FlavorError(f"flavor {name!r} ({source}): cannot import {module_name!r}: {exc}") from None
    if attr:
        factory = getattr(module, attr, None)
        if factory is None:
            raise FlavorError(f"flavor {name!r} ({source}): module {module_name!r} has no {attr!r}")
        register(name, factory)
    if name not in _registry:
        raise FlavorError(f"flavor {name!r} ({source}): importing {module_name!r} did not register it; "
                          f"call netsim_imds.flavors.register({name!r}, Factory) there, or write {module_name}:Factory")
    return _registry[name]


def resolve(name: str) -> FlavorFactory:
    """The factory of flavor ``name``, imported if needed (see the module's docstring for
    where names come from); :class:`FlavorError` lists the known names."""
    if name in _registry:
        return _registry[name]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FlavorError(f"unknown flavor {name!r} (known: {', '.join(names())})")
    env = _env_entries()
    if name in env:
        return _load(name, env[name], ENV)
    eps = _entry_points()
    if name in eps:
        return _load(name, eps[name], f"entry point of {ENTRY_POINT_GROUP}")
    if name in _builtin() and importlib.util.find_spec(f"{__package__}.{name}") is not None:
        return _load(name, f"{__package__}.{name}", "built in")
    raise FlavorError(f"unknown flavor {name!r} (known: {', '.join(names())}; "
                      f"add one with {ENV}=name=module:Factory)")
