"""Which asyncio event loop the daemon runs on: uvloop when it is installed, else the stdlib's.

uvloop (libuv) accepts connections and moves bytes in C, which roughly doubles what the
metadata service answers per second on new connections (``bench/metadata.py`` measures
both loops). It is optional: ``scripts/setup`` installs it (the ``fast`` extra), and
netsim runs the same without it. ``NETSIM_LOOP`` chooses: ``auto`` (the default: uvloop if
importable), ``uvloop`` (required: an error if missing) or ``asyncio`` (the stdlib loop).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from netsim.errors import NetsimError

ENV = "NETSIM_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")
DEFAULT = "auto"
"""What an unset ``NETSIM_LOOP`` means."""


class LoopError(NetsimError):
    """``NETSIM_LOOP`` names a loop that cannot be had."""


def loop_factory(choice: str | None = None) -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """``(factory, description)`` of the loop to run on; ``choice`` defaults to ``$NETSIM_LOOP``.

    The description (``"uvloop 0.23.0"``, ``"asyncio"``) is what the daemon logs."""
    choice = (os.environ.get(ENV, "") if choice is None else choice).strip().lower() or DEFAULT
    if choice not in CHOICES:
        raise LoopError(f"{ENV}={choice!r} is not one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise LoopError(f"{ENV}=uvloop but uvloop is not installed: run scripts/setup, or "
                                f"pip install uvloop, or unset {ENV}") from None
        else:
            return uvloop.new_event_loop, f"uvloop {getattr(uvloop, '__version__', '?')}"
    return asyncio.new_event_loop, "asyncio"

