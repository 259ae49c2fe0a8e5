"""``netsim experiment run FILE`` and ``netsim experiment check FILE``.

``run`` brings up the experiment's own datacenter (never one that is already running: an
experiment starts from a known state and tears down all it made), shows the live
timeline, prints each step's outcome and each check's verdict, writes the JSON report and
the SVG timeline, and exits 0 when everything passed, 1 when a check or a step failed, 2
(one line) for a bad file or option. ``check`` only reads and checks the file.
"""

from __future__ import annotations

import os

from netsim.experiments import report as reportmod
from netsim.experiments import svg
from netsim.experiments.loader import ExperimentError, load_experiment
from netsim.tools.cliargs import dc_name_arg
from netsim.tools.clicommon import need_root


def _writable(path: str | None, what: str) -> None:
    """One line now, rather than a lost report after a long run."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(path):
        raise ExperimentError(f"cannot write the {what} there: give a file in a folder that exists and is writable",
                              file=path)


def cmd_run(args) -> int:
    exp = load_experiment(args.file)
    _writable(args.json, "JSON report")
    _writable(args.svg, "SVG timeline")
    need_root()
    from netsim.experiments.runner import run  # late: imports the harness
    print(f"== experiment {exp.name}: {len(exp.steps)} steps, {len(exp.checks)} checks, at most {exp.duration:g} s, "
          f"datacenter {args.name or exp.datacenter} ({exp.topology.cloud})", flush=True)
    report = run(exp, name=args.name, show=lambda line: print(line, flush=True))
    print(reportmod.summary(report), flush=True)
    if args.json:
        reportmod.write_json(report, args.json)
        print(f"report written to {os.path.abspath(args.json)}")
    if args.svg:
        svg.write(report, args.svg)
        print(f"timeline written to {os.path.abspath(args.svg)}")
    return 0 if report["passed"] else 1


def cmd_check(args) -> int:
    exp = load_experiment(args.file)
    print(f"{args.file}: experiment {exp.name}, {len(exp.steps)} steps, {len(exp.checks)} checks, at most "
          f"{exp.duration:g} s on {len(exp.topology.vms)} VMs ({exp.topology.cloud}); agents: "
          f"{', '.join(exp.agents) or 'none'}")
    for s in exp.steps:
        when = f"at {s.at:g} s" if s.after is None else f"{s.offset:g} s after {s.after}"
        print(f"  {s.name:<14} {s.do:<12} {when}")
    return 0


def register(sub, named) -> None:
    """Add ``experiment run`` and ``experiment check`` to ``sub``."""
    sp = sub.add_parser("experiment", help="run a file of timed steps (events, walks, faults, load) with checks")
    xsub = sp.add_subparsers(dest="experiment_command", required=True, metavar="{run,check}")
    run = xsub.add_parser("run", help="bring up a datacenter, run the experiment's steps, judge its checks, tear down")
    run.add_argument("file", help="the experiment file (TOML; see netsim/experiments/examples/)")
    run.add_argument("--json", metavar="REPORT", help="write the JSON report here")
    run.add_argument("--svg", metavar="TIMELINE", help="write the timeline picture (SVG) here")
    run.add_argument("--name", type=dc_name_arg, help="the datacenter's name (default: the file's, or xp)")
    run.set_defaults(func=cmd_run)
    check = xsub.add_parser("check", help="read and check an experiment file without running it")
    check.add_argument("file")
    check.set_defaults(func=cmd_check)
