"""The ``netsim`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from netsim.model import bounds, names
from netsim.api import control
from netsim.api import datacenter as dcapi
from netsim.tools import reach as reachmod
from netsim.tools.cliargs import Parser, dc_name_arg, number_arg, subcommands
from netsim.errors import HostNotFound, NetsimError, NotRootError, StateError
from netsim.state import known_datacenters
from netsim.model import load


def _need_root() -> None:
    if os.geteuid() != 0:
        raise NotRootError("netsim creates network namespaces and needs root: run it with sudo")


def _dc_name(args) -> str:
    if args.name is not None:
        return args.name  # checked by the parser (dc_name_arg)
    known = [n for n in known_datacenters() if names.dc_name_problem(n) is None]
    if len(known) == 1:
        return known[0]
    if not known:
        raise StateError("no datacenter is up: start one with 'netsim up'")
    raise StateError(f"several datacenters are up ({', '.join(known)}): choose one with --name")


class _Progress:
    """Prints build progress to stderr once a build has taken more than a second."""

    def __init__(self, label: str) -> None:
        self.label, self.start, self.last = label, time.monotonic(), 0.0
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.start < 1.0 or (now - self.last < 0.5 and done < total):
            return
        self.last, self.shown = now, True
        end = "\r" if self.tty and done < total else "\n"
        print(f"{self.label}: {done}/{total} ({what})".ljust(60), end=end, file=sys.stderr, flush=True)


def _known_vm(running: dcapi.RunningDatacenter, vm: str) -> str:
    """``vm`` if the datacenter has a VM of that name; else one line listing its VMs."""
    known = [v.name for v in running.topology.vms]
    if vm not in known:
        raise HostNotFound(f"no VM {vm!r} in datacenter {running.name!r} (VMs: {', '.join(known[:8])}"
                           f"{', ...' if len(known) > 8 else ''})")
    return vm


def cmd_up(args) -> int:
    _need_root()
    topo = load(args.topology)
    if args.name is not None:
        from dataclasses import replace
        topo = replace(topo, name=args.name)
        from netsim.model.validate import validate
        validate(topo, file=args.topology)
    started = time.monotonic()
    running = dcapi.up(topo, progress=_Progress(f"building {topo.name}"))
    print(f"datacenter {running.name} is up: {len(topo.nodes)} nodes, {len(topo.vms)} VMs "
          f"in {time.monotonic() - started:.2f} s (state in {running.state.path})")
    return 0


def cmd_down(args) -> int:
    _need_root()
    name = _dc_name(args)
    started = time.monotonic()
    removal = dcapi.down(name)  # from the journal and names: works with a corrupt or missing state
    print(f"datacenter {name} is down: {removal.namespaces} namespaces removed in {time.monotonic() - started:.2f} s")
    _print_kept(name, removal)
    return 0


def _print_kept(name: str, removal: dcapi.Removal) -> None:
    if removal.kept:
        print(f"datacenter {name}: its state was corrupt ({removal.corruption.split(' (')[0]}); "
              f"kept aside in {removal.kept}")


def cmd_cleanup(args) -> int:
    _need_root()
    removed = dcapi.cleanup_report(args.name)
    if not removed:
        print("nothing to clean up")
    for dc, removal in removed.items():
        print(f"datacenter {dc}: {removal.namespaces} namespaces removed")
        _print_kept(dc, removal)
    return 0


def cmd_status(args) -> int:
    _need_root()
    status = dcapi.RunningDatacenter.attach(_dc_name(args)).status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    timers = status["timers"] + (" (RFC 3927 intervals / 10: NOT conformant)" if status["timers"] == "fast" else "")
    print(f"datacenter {status['name']} ({status['status']}), location {status['location']}, "
          f"link-local {status['linklocal']}, timers {timers}, {status['namespaces']} namespaces")
    for node in status["nodes"]:
        print(f"  node {node['name']:<12} {'up' if node['present'] else 'MISSING':<8} subnet {node['subnet']}")
        for vm in (v for v in status["vms"] if v["node"] == node["name"]):
            print(f"    vm {vm['name']:<12} {'up' if vm['present'] else 'MISSING':<8} UD{vm['update_domain']} "
                  f"FD{vm['fault_domain']}  {vm['routable']:<15} {vm['link_local'] or '(no link-local)':<16} "
                  f"{vm['mac']}  {vm.get('claim') or ''}")
    for host in status["hosts"]:
        print(f"  {host['name']:<17} {'up' if host['present'] else 'MISSING':<8} {host['address']}")
    return 0


def cmd_capture(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    from netsim.tools.capture import capture
    path = args.output or f"{running.name}-{args.node}.pcap"
    ns = running.namespace(f"node:{args.node}")
    # Announced once the file is open: a bad -o is then one line, not two.
    count = capture(ns, path, args.duration, started=lambda: print(
        f"capturing on br0 of node {args.node} for {args.duration:g} s ...", file=sys.stderr, flush=True))
    print(f"{count} frames written to {path}")
    return 0


def cmd_link(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    running.set_link(_known_vm(running, args.vm), args.state == "up")
    print(f"{args.vm}: link {args.state}")
    return 0


def cmd_exec(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise StateError("give a command after '--', e.g. netsim exec web1 -- ip addr")
    from netsim.kernel.hostexec import exec_in
    exec_in(running.namespace(args.host), argv)
    return 0  # not reached


def cmd_reach(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    rows = reachmod.matrix(running.topology, running.link_local_addresses(), metadata=args.metadata,
                           timeout=args.timeout)
    print(json.dumps(rows, indent=1) if args.json else reachmod.render(rows))
    return 0


def cmd_demo(args) -> int:
    _need_root()
    from netsim.tools import demo
    topo = load(args.topology)
    started = time.monotonic()
    print("== netsim demo: a maintenance walk of availability set 'web' (3 update domains) under load,\n"
          f"   {args.notice:g} s notice and {args.downtime:g} s downtime per update domain, {args.rate:g} requests/s "
          "through HAProxy;\n   a request fails without a complete answer within "
          f"{demo.DEFAULT_TIMEOUT:g} s; link-local claims use the fast timer profile (RFC 3927 intervals / 10: "
          "not conformant)\n", flush=True)
    runs = []
    for agents in (True, False):
        print(f"== {'with' if agents else 'without'} drain agents", flush=True)
        runs.append(demo.run_walk(agents, notice=args.notice, downtime=args.downtime, rate=args.rate,
                                  name=args.name or "demo", base=topo, show=lambda line: print(line, flush=True)))
    print("\n== the same walk, with and without drain agents\n" + demo.table(runs))
    demo.svg(runs, args.output)
    print(f"\ntimeline saved as {os.path.abspath(args.output)}; everything torn down "
          f"({time.monotonic() - started:.0f} s in all)")
    return 0


def _event_line(e: dict) -> str:
    nb = time.strftime("%H:%M:%S", time.localtime(e["not_before"]))
    return (f"{e['event_id']}  {e['event_type']:<9} {e['status']:<9} {','.join(e['resources']):<12} "
            f"NotBefore {nb}  duration {e['duration_s']}")


def cmd_event_add(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    event = running.request("event_add", vm=args.vm, type=args.type, duration=args.duration,
                            description=args.description, **{"in": args.in_})["event"]
    print(_event_line(event))
    return 0


def cmd_event_approve(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    print(_event_line(running.request("approve", id=args.id)["event"]))
    return 0


def cmd_event_cancel(args) -> int:
    _need_root()
    dcapi.RunningDatacenter.attach(_dc_name(args)).request("cancel", id=args.id)
    print(f"event {args.id} canceled")
    return 0


def cmd_events(args) -> int:
    _need_root()
    # Straight to the daemon: the events live in its repository, not in datacenter.json.
    answer = control.request(_dc_name(args), "events")
    if args.json:
        print(json.dumps(answer["events"], indent=2))
    else:
        incarnations = ", ".join(f"{n} {i}" for n, i in answer["document_incarnation"].items())
        print(f"{len(answer['events'])} events; DocumentIncarnation per node: {incarnations}")
        for e in answer["events"]:
            print("  " + _event_line(e))
    return 0


def cmd_maintenance_start(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    walk = running.request("walk_start", avset=args.avset, notice=args.notice, downtime=args.downtime)["walk"]
    uds = ([walk["current_ud"]] if walk["current_ud"] is not None else []) + walk["pending_uds"]
    print(f"walk {walk['walk_id']} of {walk['avset']}: update domains {uds} one at a time, "
          f"notice {args.notice:g} s, downtime {args.downtime:g} s")
    return 0


def cmd_maintenance_status(args) -> int:
    _need_root()
    snap = dcapi.RunningDatacenter.attach(_dc_name(args)).request("snapshot")
    if args.json:
        print(json.dumps(snap["walks"], indent=2))
        return 0
    if not snap["walks"]:
        print("no maintenance walk")
    for w in snap["walks"]:
        print(f"walk {w['walk_id']} of {w['avset']}: {w['state']}, current UD {w['current_ud']}, "
              f"done {w['done_uds']}, pending {w['pending_uds']}")
    return 0


def cmd_node(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    running.request(f"node_{args.action}", node=args.node)
    print(f"node {args.node}: {'failed (uplink and bridge down)' if args.action == 'fail' else 'recovered'}")
    return 0


def cmd_watch(args) -> int:
    _need_root()
    from netsim.tools.watch import watch
    watch(dcapi.RunningDatacenter.attach(_dc_name(args)), args.interval, args.count)
    return 0


def cmd_daemon(args) -> int:
    _need_root()
    running = dcapi.RunningDatacenter.attach(_dc_name(args))
    if args.action == "restart":
        running.stop_daemon()
    if args.reset_events:
        aside = running.reset_events()
        print(f"event repository {'kept aside as ' + aside if aside else 'absent'}; starting with no events")
    pid = running.start_daemon()
    print(f"daemon of {running.name} running as PID {pid}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``netsim`` command."""
    p = Parser(prog="netsim", description="Emulate a cloud datacenter's hosts and their "
                "In-VM Metadata Service with real Linux network namespaces.")
    sub = p.add_subparsers(dest="command", required=True)

    def named(sp):
        sp.add_argument("--name", type=dc_name_arg, help="datacenter name (default: the only one that is up)")
        return sp

    sp = sub.add_parser("up", help="build a datacenter")
    sp.add_argument("topology", nargs="?", help="topology TOML file (default: the embedded 2-node default)")
    sp.add_argument("--name", type=dc_name_arg, help="override the datacenter name from the topology")
    sp.set_defaults(func=cmd_up)
    named(sub.add_parser("down", help="tear a datacenter down")).set_defaults(func=cmd_down)
    sp = sub.add_parser("cleanup", help="remove everything with netsim's prefix, even without state")
    sp.add_argument("--name", type=dc_name_arg, help="only this datacenter")
    sp.set_defaults(func=cmd_cleanup)
    sp = named(sub.add_parser("status", help="show nodes, VMs and addresses"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)
    sp = named(sub.add_parser("exec", help="run a command inside a host: VM, node:NAME, lb, client, ops"))
    sp.add_argument("host")
    sp.add_argument("argv", nargs=argparse.REMAINDER)
    sp.set_defaults(func=cmd_exec)
    sp = named(sub.add_parser("reach", help="matrix of who reaches whom (ICMP, and TCP to metadata)"))
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--no-metadata", dest="metadata", action="store_false",
                    help="skip the TCP probe of each VM's 169.254.169.254:80")
    sp.add_argument("--timeout", type=number_arg(bounds.PROBE_TIMEOUT_S, "--timeout"), default=1.0,
                    help="seconds per probe (default 1)")
    sp.set_defaults(func=cmd_reach)
    sp = sub.add_parser("demo", help="a maintenance walk under load, with and without drain agents")
    sp.add_argument("topology", nargs="?", help="topology TOML file (default: the embedded default)")
    sp.add_argument("--name", type=dc_name_arg, help="datacenter name (default: demo)")
    sp.add_argument("--notice", type=number_arg(bounds.DEMO_PHASE_S, "--notice"), default=8.0,
                    help="seconds of notice per update domain (default 8)")
    sp.add_argument("--downtime", type=number_arg(bounds.DEMO_PHASE_S, "--downtime"), default=10.0,
                    help="seconds each VM stays down (default 10)")
    sp.add_argument("--rate", type=number_arg(bounds.DEMO_RATE, "--rate"), default=300.0,
                    help="client requests per second (default 300)")
    sp.add_argument("-o", "--output", default="netsim-demo.svg", help="the timeline picture (SVG)")
    sp.set_defaults(func=cmd_demo)
    sp = named(sub.add_parser("capture", help="write a node bridge's frames to a pcap file"))
    sp.add_argument("node")
    sp.add_argument("-o", "--output", help="pcap file (default: DC-NODE.pcap)")
    sp.add_argument("--duration", type=number_arg(bounds.CAPTURE_S, "--duration"), default=10.0,
                    help="seconds (default 10)")
    sp.set_defaults(func=cmd_capture)
    sp = named(sub.add_parser("link", help="take a VM's link down or up (it claims its address again)"))
    sp.add_argument("vm")
    sp.add_argument("state", choices=["up", "down"])
    sp.set_defaults(func=cmd_link)
    sp = named(sub.add_parser("event", help="scheduled events: add one, approve one"))
    evsub = sp.add_subparsers(dest="event_command", required=True, metavar="{add,approve,cancel}")
    ea = named(evsub.add_parser("add", help="file a one-off event for a VM"))
    ea.add_argument("vm")
    ea.add_argument("--type", default="Reboot", choices=["Freeze", "Reboot", "Redeploy", "Preempt", "Terminate"])
    ea.add_argument("--in", dest="in_", type=number_arg(bounds.NOTICE_S, "--in"), default=None, metavar="SECONDS",
                    help="NotBefore is this many seconds from now (default: Azure's minimum notice for the type)")
    ea.add_argument("--duration", type=number_arg(bounds.DURATION_S, "--duration"), default=-1, metavar="SECONDS",
                    help="DurationInSeconds (default -1: the type's default)")
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
    sp = named(sub.add_parser("node", help="fail a node for real, or recover it"))
    sp.add_argument("action", choices=["fail", "recover"])
    sp.add_argument("node")
    sp.set_defaults(func=cmd_node)
    sp = named(sub.add_parser("watch", help="a live timeline of nodes, VMs and events"))
    sp.add_argument("--interval", type=number_arg(bounds.WATCH_INTERVAL_S, "--interval"), default=1.0,
                    help="seconds between frames (default 1)")
    sp.add_argument("--count", type=number_arg(bounds.FRAME_COUNT, "--count"), default=0,
                    help="stop after this many frames (default: until Ctrl-C)")
    sp.set_defaults(func=cmd_watch)
    sp = named(sub.add_parser("daemon", help="start the datacenter's daemon again (after a crash or kill)"))
    sp.add_argument("action", choices=["start", "restart"])
    sp.add_argument("--reset-events", action="store_true",
                    help="set a corrupt event repository aside (events.db.corrupt-TIME) and start with no events")
    sp.set_defaults(func=cmd_daemon)
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
