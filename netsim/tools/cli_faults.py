"""``netsim fault add|list|clear``: faults of the metadata service and of the links (issue 13).

Each is a thin call into the daemon's control protocol (:mod:`netsim.runtime.fault_commands`).
Numbers are checked by :mod:`netsim.model.bounds` as argparse reads them, the combination of
options by :func:`netsim.runtime.faultspec.classify` before the daemon is asked, so a bad
command line is one line and exit 2 even with no datacenter up.
"""

from __future__ import annotations

import json
import time

from netsim.api import datacenter as dcapi
from netsim.model import bounds
from netsim.runtime.faultspec import OPTIONS, classify
from netsim.tools.cliargs import number_arg
from netsim.tools.clicommon import dc_name, need_root

NUMBERS = {
    "http": (bounds.FAULT_STATUS, "STATUS", "answer this status (429 and 503 with Retry-After)"),
    "delay": (bounds.FAULT_DELAY_MS, "MS", "delay each answer by this many milliseconds"),
    "jitter": (bounds.FAULT_DELAY_MS, "MS", "+- this many ms on --delay (HTTP) or --latency (link)"),
    "truncate": (bounds.FAULT_BYTES, "BYTES", "send this many bytes of the body, then close"),
    "rate": (bounds.FAULT_RATE, "BYTES_PER_S", "dribble the body at this rate; with a link option, the link's rate"),
    "latency": (bounds.FAULT_LATENCY_MS, "MS", "link latency toward the VM (netem or the delay line)"),
    "loss": (bounds.FAULT_PERCENT, "PCT", "drop this share of the packets toward the VM"),
    "duplicate": (bounds.FAULT_PERCENT, "PCT", "duplicate this share of the packets (netem or the delay line)"),
    "reorder": (bounds.FAULT_PERCENT, "PCT", "reorder this share of the packets (with --latency)"),
    "corrupt": (bounds.FAULT_PERCENT, "PCT", "corrupt this share of the packets (netem or the delay line)"),
    "probability": (bounds.FAULT_PROBABILITY, "P", "apply to this share of the matching requests (HTTP)"),
}
FLAGS = {"hang": "accept and never answer (while the fault lasts)", "reset": "reset the connection (TCP RST)",
         "partition": "cut a VM from its metadata service, or node:NAME from the fabric"}


def fault_line(f: dict) -> str:
    """One fault as ``fault list`` prints it."""
    opts = " ".join(f"--{k}" if v is True else f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}"
                    for k, v in f.items() if k in OPTIONS)
    start = time.strftime("%H:%M:%S", time.localtime(f["starts_at"]))
    end = "until cleared" if f["ends_at"] is None else "until " + time.strftime("%H:%M:%S", time.localtime(f["ends_at"]))
    return f"{f['id']:<9} {f['state']:<8} {f['kind']:<5} {f['target']:<12} {opts}  from {start} {end}"


def cmd_fault_add(args) -> int:
    options = {k: getattr(args, k) for k in OPTIONS}
    classify(args.target, {k: v for k, v in options.items() if v is not None and v is not False})
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    answer = running.request("fault_add", target=args.target, duration=args.duration,
                             **{"in": args.in_}, **{k: v for k, v in options.items() if v is not None})
    print(fault_line(answer["fault"]))
    return 0


def cmd_fault_list(args) -> int:
    need_root()
    faults = dcapi.RunningDatacenter.attach(dc_name(args)).faults()
    if args.json:
        print(json.dumps(faults, indent=2))
        return 0
    print(f"{len(faults)} faults" + (":" if faults else ""))
    for f in faults:
        print("  " + fault_line(f))
    return 0


def cmd_fault_clear(args) -> int:
    need_root()  # ID or --all, exactly one: the parser's group makes sure
    cleared = dcapi.RunningDatacenter.attach(dc_name(args)).clear_faults(None if args.all else args.id)
    print(f"cleared: {', '.join(cleared) or 'no fault'}")
    return 0


def register(sub, named) -> None:
    """Add ``fault add|list|clear`` to ``sub``; ``named(sp)`` adds ``--name`` to one."""
    sp = named(sub.add_parser("fault", help="faults: a metadata service and links that misbehave on purpose"))
    fsub = sp.add_subparsers(dest="fault_command", required=True, metavar="{add,list,clear}")
    fa = named(fsub.add_parser("add", help="add a fault to a VM, node:NAME or all"))
    fa.add_argument("target", help="a VM, node:NAME or all")
    for key in OPTIONS:
        if key in NUMBERS:
            bound, metavar, text = NUMBERS[key]
            fa.add_argument(f"--{key}", type=number_arg(bound, f"--{key}"), default=None, metavar=metavar, help=text)
        elif key in FLAGS:
            fa.add_argument(f"--{key}", action="store_true", default=None, help=FLAGS[key])
    fa.add_argument("--path", default=None, metavar="PREFIX", help="only requests whose path starts with it (HTTP)")
    fa.add_argument("--in", dest="in_", type=number_arg(bounds.FAULT_START_S, "--in"), default=None, metavar="S",
                    help="start in this many seconds (default: now)")
    fa.add_argument("--duration", type=number_arg(bounds.FAULT_DURATION_S, "--duration"), default=None,
                    metavar="S", help="last this many seconds (default: until cleared)")
    fa.set_defaults(func=cmd_fault_add)
    fl = named(fsub.add_parser("list", help="every fault: pending, active or ended"))
    fl.add_argument("--json", action="store_true")
    fl.set_defaults(func=cmd_fault_list)
    fc = named(fsub.add_parser("clear", help="remove a fault (ID) or every fault (--all)"))
    group = fc.add_mutually_exclusive_group(required=True)
    group.add_argument("id", nargs="?", default=None, help="a fault id (see netsim fault list)")
    group.add_argument("--all", action="store_true", help="every fault")
    fc.set_defaults(func=cmd_fault_clear)
