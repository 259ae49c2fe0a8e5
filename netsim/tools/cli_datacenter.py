"""``netsim`` subcommands of a datacenter's life: up, down, cleanup, status, exec, reach,
capture, link, watch, daemon, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from netsim.api import datacenter as dcapi
from netsim.errors import StateError
from netsim.model import bounds, load
from netsim.tools import reach as reachmod
from netsim.tools.cliargs import dc_name_arg, number_arg
from netsim.tools.clicommon import Progress, dc_name, known_vm, need_root


def cmd_up(args) -> int:
    need_root()
    topo = load(args.topology)
    if args.name is not None:
        from dataclasses import replace
        topo = replace(topo, name=args.name)
        from netsim.model.validate import validate
        validate(topo, file=args.topology)
    started = time.monotonic()
    running = dcapi.up(topo, progress=Progress(f"building {topo.name}"))
    print(f"datacenter {running.name} is up: {len(topo.nodes)} nodes, {len(topo.vms)} VMs "
          f"in {time.monotonic() - started:.2f} s (state in {running.state.path})")
    return 0


def cmd_down(args) -> int:
    need_root()
    name = dc_name(args)
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
    need_root()
    removed = dcapi.cleanup_report(args.name)
    if not removed:
        print("nothing to clean up")
    for dc, removal in removed.items():
        print(f"datacenter {dc}: {removal.namespaces} namespaces removed")
        _print_kept(dc, removal)
    return 0


def cmd_status(args) -> int:
    need_root()
    status = dcapi.RunningDatacenter.attach(dc_name(args)).status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    timers = status["timers"] + (" (RFC 3927 intervals / 10: NOT conformant)" if status["timers"] == "fast" else "")
    print(f"datacenter {status['name']} ({status['status']}), location {status['location']}, "
          f"link-local {status['linklocal']}, timers {timers}, {status['namespaces']} namespaces")
    for node in status["nodes"]:
        print(f"  node {node['name']:<12} {'up' if node['present'] else 'MISSING':<8} subnet {node['subnet']}")
        for vm in (v for v in status["vms"] if v["node"] == node["name"]):
            shown = ("stopped" if vm.get("stopped") else "up") if vm["present"] else "MISSING"
            print(f"    vm {vm['name']:<12} {shown:<8} UD{vm['update_domain']} "
                  f"FD{vm['fault_domain']}  {vm['routable']:<15} {vm['link_local'] or '(no link-local)':<16} "
                  f"{vm['mac']}  {vm.get('claim') or ''}")
            for c in vm["containers"]:
                print(f"      container {c['host']:<19} {'up' if c['present'] else 'MISSING':<8} {c['address']}")
    for host in status["hosts"]:
        print(f"  {host['name']:<17} {'up' if host['present'] else 'MISSING':<8} {host['address']}")
    from netsim.tools.cli_faults import fault_line  # issue 13: the faults, pending, active or ended
    for fault in status.get("faults", []):
        print(f"  fault {fault_line(fault)}")
    return 0


def cmd_capture(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    from netsim.tools.capture import capture
    path = args.output or f"{running.name}-{args.node}.pcap"
    ns = running.namespace(f"node:{args.node}")
    # Announced once the file is open: a bad -o is then one line, not two.
    count = capture(ns, path, args.duration, started=lambda: print(
        f"capturing on br0 of node {args.node} for {args.duration:g} s ...", file=sys.stderr, flush=True))
    print(f"{count} frames written to {path}")
    return 0


def cmd_link(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    running.set_link(known_vm(running, args.vm), args.state == "up")
    print(f"{args.vm}: link {args.state}")
    return 0


def cmd_exec(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise StateError("give a command after '--', e.g. netsim exec web1 -- ip addr")
    from netsim.kernel.hostexec import exec_in
    exec_in(running.namespace(args.host), argv)
    return 0  # not reached


def cmd_reach(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    rows = reachmod.matrix(running.topology, running.link_local_addresses(), metadata=args.metadata,
                           timeout=args.timeout)
    print(json.dumps(rows, indent=1) if args.json else reachmod.render(rows))
    return 0


def cmd_demo(args) -> int:
    need_root()
    from netsim.tools import demo
    topo = load(args.topology)
    if args.cloud:  # the same walk on another flavor's metadata service and its drain agent
        from dataclasses import replace
        from netsim.model.validate import validate
        topo = replace(topo, cloud=args.cloud)
        from netsim.model.load import CLOUD_DEFAULTS  # AWS's regions are not Azure's
        if "location" in CLOUD_DEFAULTS.get(args.cloud, {}):
            topo = replace(topo, location=CLOUD_DEFAULTS[args.cloud]["location"])
        validate(topo)
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


def cmd_watch(args) -> int:
    need_root()
    from netsim.tools.watch import watch
    watch(dcapi.RunningDatacenter.attach(dc_name(args)), args.interval, args.count)
    return 0


def cmd_daemon(args) -> int:
    need_root()
    running = dcapi.RunningDatacenter.attach(dc_name(args))
    if args.action == "restart":
        running.stop_daemon()
    if args.reset_events:
        aside = running.reset_events()
        print(f"event repository {'kept aside as ' + aside if aside else 'absent'}; starting with no events")
    pid = running.start_daemon()
    print(f"daemon of {running.name} running as PID {pid}")
    return 0


def register(sub, named) -> None:
    """Add the datacenter subcommands to ``sub``; ``named(sp)`` adds ``--name`` to one."""
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
    sp = named(sub.add_parser("exec", help="run a command inside a host: VM, VM/CONTAINER, node:NAME, lb, "
                                           "client, ops"))
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
    sp.add_argument("--cloud", help="the metadata service's flavor (default: the topology's), e.g. azure, gcp")
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
