"""``netsim`` subcommands of maintenance: event add/approve/cancel, events, maintenance
start/status, node fail/recover. Each is a thin call into the daemon's control protocol
(:mod:`netsim.runtime.maintenance_commands`)."""

from __future__ import annotations

import json
import time

from netsim_imds.events import flavor_names

from netsim.api import control
from netsim.api import datacenter as dcapi
from netsim.model import bounds
from netsim.tools.cliargs import number_arg
from netsim.tools.clicommon import dc_name, need_root


def _event_line(e: dict) -> str:
    nb = time.strftime("%H:%M:%S", time.localtime(e["not_before"]))
    shown = e.get("shown_id", e["event_id"])  # the id the VMs see (AWS: instance-event-...)
    return (f"{shown}  {e['event_type']:<9} {e['status']:<9} {','.join(e['resources']):<12} "
            f"NotBefore {nb}  duration {'unknown' if e['duration_s'] is None else e['duration_s']}")


def cmd_event_add(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    event = running.request("event_add", vm=args.vm, type=args.type, duration=args.duration,
                            description=args.description, source=args.source, action=args.action,
                            **{"in": args.in_})["event"]
    print(_event_line(event))
    return 0


def cmd_event_approve(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    print(_event_line(running.request("approve", id=args.id)["event"]))
    return 0


def cmd_event_cancel(args) -> int:
    need_root()
    dcapi.RunningDatacenter.attach(dc_name(args)).request("cancel", id=args.id)
    print(f"event {args.id} canceled")
    return 0


def cmd_events(args) -> int:
    need_root()
    # Straight to the daemon: the events live in its repository, not in datacenter.json.
    answer = control.request(dc_name(args), "events")
    if args.json:
        print(json.dumps(answer["events"], indent=2))
    else:
        incarnations = ", ".join(f"{n} {i}" for n, i in answer["document_incarnation"].items())
        print(f"{len(answer['events'])} events; DocumentIncarnation per node: {incarnations}")
        for e in answer["events"]:
            print("  " + _event_line(e))
    return 0


def cmd_maintenance_start(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    walk = running.request("walk_start", avset=args.avset, notice=args.notice, downtime=args.downtime)["walk"]
    uds = ([walk["current_ud"]] if walk["current_ud"] is not None else []) + walk["pending_uds"]
    print(f"walk {walk['walk_id']} of {walk['avset']}: update domains {uds} one at a time, "
          f"notice {args.notice:g} s, downtime {args.downtime:g} s")
    return 0


def cmd_maintenance_status(args) -> int:
    need_root()
    snap = dcapi.RunningDatacenter.attach(dc_name(args)).request("snapshot")
    if args.json:
        print(json.dumps(snap["walks"], indent=2))
        return 0
    if not snap["walks"]:
        print("no maintenance walk")
    for w in snap["walks"]:
        print(f"walk {w['walk_id']} of {w['avset']}: {w['state']}, current UD {w['current_ud']}, "
              f"done {w['done_uds']}, pending {w['pending_uds']}")
    if snap.get("stopped_vms"):  # maintenance leaves them off (netsim/maintenance/power.py)
        print(f"stopped (off until netsim vm start): {', '.join(snap['stopped_vms'])}")
    return 0


def cmd_vm_start(args) -> int:
    need_root()
    dcapi.RunningDatacenter.attach(dc_name(args)).request("vm_start", vm=args.vm)
    print(f"vm {args.vm}: powered on")
    return 0


def cmd_node(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    running.request(f"node_{args.action}", node=args.node)
    print(f"node {args.node}: {'failed (uplink and bridge down)' if args.action == 'fail' else 'recovered'}")
    return 0


def register(sub, named) -> None:
    """Add the maintenance subcommands to ``sub``; ``named(sp)`` adds ``--name`` to one."""
    sp = named(sub.add_parser("event", help="scheduled events: add one, approve one"))
    evsub = sp.add_subparsers(dest="event_command", required=True, metavar="{add,approve,cancel}")
    ea = named(evsub.add_parser("add", help="file a one-off event for a VM"))
    ea.add_argument("vm")
    # The datacenter's flavor's own names (Azure: Freeze, Reboot, Redeploy, Preempt,
    # Terminate); the daemon maps them to the event model's kinds.
    # A name "TYPE:ACTION" is a variant of TYPE (AWS: spot-interruption:stop), given as --action.
    ea.add_argument("--type", default="Reboot", choices=[n for n in flavor_names() if ":" not in n],
                    help="the event type in the datacenter's flavor's words (default Reboot; AWS: its codes)")
    ea.add_argument("--action", default=None, choices=sorted({n.partition(":")[2] for n in flavor_names() if ":" in n}),
                    help="a variant of the type (AWS spot-interruption: terminate, stop or hibernate)")
    ea.add_argument("--source", default="Platform", choices=["Platform", "User"],
                    help="who asks for it (Azure shows EventSource; default Platform)")
    ea.add_argument("--in", dest="in_", type=number_arg(bounds.NOTICE_S, "--in"), default=None, metavar="SECONDS",
                    help="NotBefore is this many seconds from now (default: the flavor's minimum notice for the type)")
    ea.add_argument("--duration", type=number_arg(bounds.DURATION_S, "--duration"), default=-1, metavar="SECONDS",
                    help="seconds of impact, announced (DurationInSeconds) and made real; default -1: unknown, "
                         "the type's default impact (Azure: Freeze 5, Reboot 30, Redeploy 60 s)")
    ea.add_argument("--description", default="")
    ea.set_defaults(func=cmd_event_add)
    ep = named(evsub.add_parser("approve", help="approve (start) an event, as a VM's StartRequests would"))
    ep.add_argument("id")
    ep.set_defaults(func=cmd_event_approve)
    ec = named(evsub.add_parser("cancel", help="cancel a Scheduled event (it disappears)"))
    ec.add_argument("id")
    ec.set_defaults(func=cmd_event_cancel)
    sp = named(sub.add_parser("events", help="list scheduled events"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_events)
    sp = named(sub.add_parser("maintenance", help="planned maintenance: walk an availability set's update domains"))
    msub = sp.add_subparsers(dest="maintenance_command", required=True, metavar="{start,status}")
    ms = named(msub.add_parser("start", help="start a walk, one update domain at a time"))
    ms.add_argument("avset")
    ms.add_argument("--notice", type=number_arg(bounds.NOTICE_S, "--notice"), default=900.0,
                    help="seconds of notice per update domain (default 900)")
    ms.add_argument("--downtime", type=number_arg(bounds.DOWNTIME_S, "--downtime"), default=60.0,
                    help="seconds each VM stays down (default 60)")
    ms.set_defaults(func=cmd_maintenance_start)
    mt = named(msub.add_parser("status", help="the walks and where they are"))
    mt.add_argument("--json", action="store_true")
    mt.set_defaults(func=cmd_maintenance_status)
    sp = named(sub.add_parser("vm", help="power a stopped VM on again"))
    vsub = sp.add_subparsers(dest="vm_command", required=True, metavar="{start}")
    vs = named(vsub.add_parser("start", help="power on a VM that an instance-stop or a spot stop left off"))
    vs.add_argument("vm")
    vs.set_defaults(func=cmd_vm_start)
    sp = named(sub.add_parser("node", help="fail a node for real, or recover it"))
    sp.add_argument("action", choices=["fail", "recover"])
    sp.add_argument("node")
    sp.set_defaults(func=cmd_node)
