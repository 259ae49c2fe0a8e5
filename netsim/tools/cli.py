"""The ``netsim`` command line: the parser and the entry point.

The subcommands live with their area: :mod:`netsim.tools.cli_datacenter` (up, down,
status, exec, ...) and :mod:`netsim.tools.cli_maintenance` (events, walks, nodes); each
module's ``register`` adds its subcommands.
"""

from __future__ import annotations

import argparse
import sys

from netsim.errors import NetsimError
from netsim.tools import cli_datacenter, cli_experiment, cli_faults, cli_maintenance
from netsim.tools.cliargs import Parser, subcommands
from netsim.tools.clicommon import named

AREAS = (cli_datacenter, cli_maintenance, cli_faults, cli_experiment)
"""The modules whose ``register(sub, named)`` adds their subcommands, in help order."""


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``netsim`` command."""
    p = Parser(prog="netsim", description="Emulate a cloud datacenter's hosts and their "
                "In-VM Metadata Service with real Linux network namespaces.")
    sub = p.add_subparsers(dest="command", required=True)
    for area in AREAS:
        area.register(sub, named)
    return p


def command_names() -> list[str]:
    """Every runnable subcommand, e.g. ``["up", ..., "event add", ...]`` (a test covers each)."""
    return subcommands(parser())


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors exit 2 with one line and no traceback."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except NetsimError as exc:
        # One line, whatever the message holds (a daemon's answer, a file's contents).
        print(f"netsim: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("netsim: error: the datacenter's daemon did not answer in time; it may be overloaded: "
              "try again, or see daemon.log in its state folder", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
