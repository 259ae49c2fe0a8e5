"""The daemon's control protocol: one registry of typed commands, JSON lines on the wire.

A client sends one JSON object per line, ``{"command": NAME, ARG: VALUE, ...}``, and gets
one back: ``{"ok": true, ...the command's answer}`` or ``{"ok": false, "error": LINE}``.

Each command is registered by the feature that owns it (:func:`command`), with its
arguments as a frozen dataclass whose fields say how a value from the socket is checked
(:func:`text`, :func:`flag`, :func:`number`, :func:`name`, :func:`passthrough`). Every value
is checked here, at the boundary, before a handler runs, and every refusal is a
:class:`CommandError` with one line that says what to send instead. The daemon's core
(:mod:`netsim.runtime.daemon`) only hands lines to :func:`answer`; it names no command.

Features that register commands: :data:`FEATURES` (imported on first use).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from netsim.errors import NetsimError
from netsim.model import bounds

FEATURES = ("netsim.runtime.claims", "netsim.runtime.maintenance_commands", "netsim.runtime.fault_commands")
"""Modules whose import registers their commands (besides ``ping``, defined here)."""

_SPEC = "netsim.command.argument"


class CommandError(NetsimError):
    """The daemon refused a control request: unknown command, missing, unknown or bad
    argument, or an action the datacenter cannot take now; the message says why."""


class Context(Protocol):
    """What a handler may use: the daemon's parts (:class:`netsim.runtime.daemon.Daemon`)."""

    dc: Any
    controller: Any
    linklocal: Any
    server: Any

    def known(self, kind: str, value: object) -> str:
        """``value`` if the topology has a ``kind`` ("vm", "node", "availability set") of
        that name; else a NetsimError that lists the names it has."""


@dataclass(frozen=True)
class Argument:
    """How one argument is read from the wire: ``check(context, value, label)`` returns the
    typed value or raises a NetsimError; ``wire`` is its JSON key when that is not the
    field's name (``in`` is a Python keyword)."""

    check: Callable[[Context, object, str], object]
    wire: str | None = None


def _field(check: Callable[[Context, object, str], object], default: object, wire: str | None):
    return dataclasses.field(default=default, metadata={_SPEC: Argument(check, wire)})


def text(*, default: object = dataclasses.MISSING, wire: str | None = None, limit: int = 1000,
         what: str | None = None, hint: str = "", optional: bool = False):
    """A string of at most ``limit`` characters (None too, with ``optional``); ``what``
    names it in the refusal (default: the argument's key), ``hint`` says where to find one."""
    def check(ctx: Context, value: object, label: str) -> object:
        if value is None and optional:
            return None
        if not isinstance(value, str) or len(value) > limit:
            where = f" ({hint})" if hint else ""
            raise CommandError(f"{what or repr(label)} is a string of at most {limit} characters{where}, "
                               f"not {value!r}")
        return value
    return _field(check, default, wire)


def flag(*, default: object = dataclasses.MISSING, wire: str | None = None):
    """JSON ``true`` or ``false``: no strings, no numbers."""
    def check(ctx: Context, value: object, label: str) -> object:
        if not isinstance(value, bool):
            raise CommandError(f"{label!r} must be true or false, not {value!r}")
        return value
    return _field(check, default, wire)


def number(limits: bounds.Bound, what: str, *, default: object = dataclasses.MISSING, wire: str | None = None):
    """A number within ``limits`` (:mod:`netsim.model.bounds`: no NaN, no infinity, no
    string, no boolean); None too when the default is None. ``what`` names it."""
    def check(ctx: Context, value: object, label: str) -> object:
        if value is None and default is None:
            return None
        return bounds.check(value, limits, what, error=CommandError)
    return _field(check, default, wire)


def name(kind: str, *, default: object = dataclasses.MISSING, wire: str | None = None):
    """The name of a ``kind`` of the topology ("vm", "node", "availability set")."""
    def check(ctx: Context, value: object, label: str) -> object:
        try:
            return ctx.known(kind, value)
        except CommandError:
            raise
        except NetsimError as exc:  # the topology's own refusal, which lists the names
            raise CommandError(str(exc)) from None
    return _field(check, default, wire)


def passthrough(*, default: object = dataclasses.MISSING, wire: str | None = None):
    """Any JSON value, checked by the handler's own callee (use sparingly, and say who checks)."""
    return _field(lambda ctx, value, label: value, default, wire)


@dataclass(frozen=True)
class NoArguments:
    """A command that takes no argument."""


@dataclass(frozen=True)
class Command:
    """A registered command: its name, argument class, handler and one line of help."""

    name: str
    arguments: type
    handler: Callable[[Context, Any], dict]
    help: str

    def parse(self, ctx: Context, raw: dict) -> Any:
        """The typed arguments of a request, every value checked; CommandError if one is bad."""
        fields = {f.metadata[_SPEC].wire or f.name: f for f in dataclasses.fields(self.arguments)}
        unknown = sorted(str(k) for k in raw if k not in fields)
        if unknown:
            takes = ", ".join(fields) or "no argument"
            raise CommandError(f"{self.name} takes no argument {unknown[0]!r} (it takes: {takes})")
        values = {}
        for key, f in fields.items():
            if key in raw:
                values[f.name] = f.metadata[_SPEC].check(ctx, raw[key], key)
            elif f.default is dataclasses.MISSING:
                raise CommandError(f"{self.name} needs the argument {key!r}")
        return self.arguments(**values)


REGISTRY: dict[str, Command] = {}
"""Every command by name; filled by :func:`command` as the features are imported."""


def command(command_name: str, arguments: type = NoArguments, help: str = ""):
    """Register the decorated ``handler(context, arguments) -> dict`` as ``command_name``."""
    def register(handler: Callable[[Context, Any], dict]) -> Callable[[Context, Any], dict]:
        if command_name in REGISTRY and REGISTRY[command_name].handler is not handler:
            raise ValueError(f"control command {command_name!r} is registered twice")
        if not dataclasses.is_dataclass(arguments):
            raise TypeError(f"the arguments of {command_name!r} must be a dataclass")
        REGISTRY[command_name] = Command(command_name, arguments, handler, help or (handler.__doc__ or "").strip())
        return handler
    return register


def registry() -> dict[str, Command]:
    """Every command, after importing the modules that register them (:data:`FEATURES`)."""
    for module in FEATURES:
        importlib.import_module(module)
    return REGISTRY


def dispatch(ctx: Context, request: object) -> dict:
    """Run one decoded request; CommandError (one line) if it is refused."""
    if not isinstance(request, dict):
        raise CommandError('a control request is one JSON object per line: {"command": ..., ...}')
    commands = registry()
    cmd = commands.get(request.get("command"))  # type: ignore[arg-type]
    if cmd is None:
        known = ", ".join(sorted(commands))
        raise CommandError(f"unknown command {request.get('command')!r} (commands: {known})")
    args = cmd.parse(ctx, {k: v for k, v in request.items() if k != "command"})
    return cmd.handler(ctx, args)


def decode(line: bytes) -> object:
    """One request line as JSON; CommandError if it is not JSON (or nested too deeply)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else "it is not JSON"
        raise CommandError(f'a control request is one JSON object per line ({reason}): {{"command": ..., ...}}') \
            from None


def encode(answer: dict) -> bytes:
    """One answer line."""
    return json.dumps(answer).encode() + b"\n"


def refusal(exc: NetsimError) -> dict:
    """The answer that carries a refusal, as one line."""
    return {"ok": False, "error": " ".join(str(exc).split())}


@command("ping")
def ping(ctx: Context, args: NoArguments) -> dict:
    """Is the daemon there: its PID, the nodes it serves and the commands it knows."""
    return {"pid": os.getpid(), "nodes": ctx.server.nodes, "commands": sorted(registry())}
