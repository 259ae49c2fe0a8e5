"""The argument types and parser class of the ``netsim`` command (:mod:`netsim.tools.cli`).

Bad input is netsim's one rule everywhere: one line on stderr and exit 2. argparse's own
errors print a usage block first; :class:`Parser` prints one line instead. Numbers are
read and checked by :mod:`netsim.model.bounds`, datacenter names by :mod:`netsim.model.names`,
before any command runs or any path is built.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from netsim.model import bounds, names
from netsim.errors import NetsimError


class Parser(argparse.ArgumentParser):
    """argparse with netsim's rule for user errors: one line on stderr, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"netsim: error: {message} (see '{self.prog} --help')\n")


def number_arg(bound: bounds.Bound, what: str) -> Callable[[str], float]:
    """An argparse ``type`` that reads a number and checks it against ``bound``."""
    def parse(text: str) -> float:
        try:
            return bounds.parse_number(text, bound, what)
        except NetsimError as exc:
            # argparse prefixes "argument --in: ", so the field is not named twice.
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what} ")) from None
    parse.__name__ = what  # argparse names the type in some messages
    return parse


def dc_name_arg(text: str) -> str:
    """The ``--name`` type: a valid datacenter name, checked before any path is built."""
    if (why := names.dc_name_problem(text)) is not None:
        raise argparse.ArgumentTypeError(why)
    return text


def subcommands(p: argparse.ArgumentParser) -> list[str]:
    """Every runnable subcommand of ``p``, e.g. ``["up", ..., "event add", ...]``."""
    out: list[str] = []

    def walk(parser_: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser_._actions:  # argparse has no public way to list subparsers
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                        walk(child, f"{prefix}{name} ")
                    else:
                        out.append(f"{prefix}{name}")
    walk(p, "")
    return out
