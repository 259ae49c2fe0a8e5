"""Realises a topology in the kernel, over netlink, journaled and rolled back on failure.

The fastest style measured on the target machine (``shared/reference/measured-anchors.md``):
namespaces created in-process, every veth peer born in its namespace, IPv6 off, one
short-lived netlink socket per namespace and requests batched. netsim creates no link in
the host's namespace: each node's ports live in the node, each VM's eth0 in the VM.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack

from netsim.model import names
from netsim.kernel import netns, nft
from netsim.errors import BuildError, NetsimError, StateError
from netsim.kernel.rtnl import Rtnl
from netsim.state import StateDir
from netsim.kernel.teardown import remove_namespaces
from netsim.model import addressing
from netsim.model.plan import (LINK_LOCAL_ROUTE_METRIC, UPLINK_PREFIXLEN, VM_PREFIXLEN, AddressPlan, VmPlan,
                               plan_of)
from netsim.model.topology import Datacenter

Progress = Callable[[str, int, int], None]
__all__ = ["LINK_LOCAL_ROUTE_METRIC", "Progress", "build", "build_workers", "ensure_neighbour_capacity"]


def _enter_new(state: StateDir, name: str, *, forwarding: bool = False) -> tuple[Rtnl, int]:
    """Create namespace ``name`` (journaled first), leave the thread in it, and return a
    netlink socket and an fd of it. IPv6 is turned off before any link exists: its DAD,
    router and MLD chatter floods every bridge and makes large builds superlinear."""
    state.journal("ns", name)
    netns.create_and_enter(name)
    netns.write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
    netns.write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")
    # A TCP connection orphaned by a killed process keeps its namespace alive while it
    # retransmits to a peer that is gone (a VM powered off): let such orphans die fast so
    # teardown is not held up for minutes.
    netns.write_sysctl("net/ipv4/tcp_orphan_retries", "1")
    netns.write_sysctl("net/ipv4/tcp_fin_timeout", "2")
    if forwarding:
        netns.write_sysctl("net/ipv4/ip_forward", "1")
        # With br_netfilter loaded, bridged frames would also traverse the IP hooks.
        for family in ("arptables", "iptables", "ip6tables"):
            if os.path.exists(f"/proc/sys/net/bridge/bridge-nf-call-{family}"):
                netns.write_sysctl(f"net/bridge/bridge-nf-call-{family}", "0")
    sock = Rtnl.here(name)
    sock.set_link(names.LO_INDEX, up=True, what="bringing lo up")
    return sock, os.open("/proc/thread-self/ns/net", os.O_RDONLY)


def ensure_neighbour_capacity(dc: Datacenter) -> dict[str, int]:
    """Raise the host's ARP table limits if this datacenter could overflow them.

    The neighbour table's garbage-collection limits exist only in the host's namespace
    and bound the entries of every namespace together (default gc_thresh3 = 1024). Each
    VM needs a few entries (its node's for it, its own for the gateway and metadata
    address), so a 1,000-VM datacenter overflows the default: connections then stall.
    Limits are only ever raised, and the datacenter holds them until it goes: the last
    datacenter to go puts back the original values (:mod:`netsim.kernel.hostsettings`).
    Returns the values written.
    """
    from netsim.kernel import hostsettings
    hosts = len(dc.vms) + len(dc.nodes) + sum(len(v.containers) for v in dc.vms)  # a container is one more host
    want3 = 8 * hosts + 1024
    key = "net/ipv4/neigh/default/"
    written = hostsettings.hold(dc.name, {key + "gc_thresh3": want3, key + "gc_thresh2": want3 // 2,
                                          key + "gc_thresh1": want3 // 4})
    return {k[len(key):]: v for k, v in written.items()}


def build_workers(dc: Datacenter) -> int:
    """How many processes build the nodes: one per core (at most 4) for large datacenters.

    Creating namespaces and links is mostly Python and /proc work between short netlink
    calls, so forked workers scale with cores; ``NETSIM_BUILD_WORKERS`` overrides it.
    """
    if "NETSIM_BUILD_WORKERS" in os.environ:
        return max(1, int(os.environ["NETSIM_BUILD_WORKERS"]))
    return 1 if len(dc.nodes) < 8 else max(1, min(4, os.cpu_count() or 1, len(dc.nodes) // 4))


_PR_SET_PDEATHSIG = 1


class _Build:
    def __init__(self, dc: Datacenter, state: StateDir, progress: Progress | None) -> None:
        self.dc, self.state, self.progress = dc, state, progress
        self.plan: AddressPlan = plan_of(dc)
        self.total = len(dc.nodes) + len(dc.vms) + 1 + len(names.EXTRA_HOSTS)
        self.done = 0
        self.report_fd: int | None = None  # in a worker: where progress goes

    def step(self, what: str) -> None:
        if self.report_fd is not None:
            os.write(self.report_fd, (what + "\n").encode())
            return
        self.done += 1
        if self.progress:
            self.progress(what, self.done, self.total)

    def run(self) -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            with ExitStack() as stack:
                fabric = self.build_fabric(stack)
                fabric.flush()
                workers = build_workers(self.dc)
                if workers > 1:
                    self.build_nodes_in_workers(workers)
                else:
                    for node in self.dc.nodes:
                        self.build_node(node, fabric)
                fabric.flush()
        finally:
            try:
                netns.setns(home)
            finally:
                os.close(home)

    def build_nodes_in_workers(self, workers: int) -> None:
        """Build the nodes in ``workers`` forked processes; each reports its steps on a
        pipe and dies with this process (PR_SET_PDEATHSIG), so a killed build never
        leaves a worker creating namespaces behind ``netsim cleanup``."""
        import ctypes
        import select
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getpid()
        children: dict[int, int] = {}  # pid -> read end of its pipe
        try:
            for w in range(workers):
                r, wfd = os.pipe()
                pid = os.fork()
                if pid == 0:  # the worker
                    code = 1
                    try:
                        os.close(r)
                        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                        if os.getppid() != parent:
                            os._exit(1)
                        self.report_fd = wfd
                        with Rtnl.in_namespace(names.fabric_ns(self.dc.name)) as fabric:
                            for node in self.dc.nodes[w::workers]:
                                self.build_node(node, fabric)
                            fabric.flush()
                        code = 0
                    except BaseException as exc:  # reported to the parent, which rolls back
                        os.write(wfd, f"!{exc}\n".encode())
                    finally:
                        os._exit(code)
                os.close(wfd)
                children[pid] = r
            errors: list[str] = []
            buffers = {fd: b"" for fd in children.values()}
            while buffers:
                for fd in select.select(list(buffers), [], [])[0]:
                    data = os.read(fd, 65536)
                    if not data:
                        os.close(fd)
                        del buffers[fd]
                        continue
                    *lines, buffers[fd] = (buffers[fd] + data).split(b"\n")
                    for line in lines:
                        text = line.decode(errors="replace")
                        if text.startswith("!"):
                            errors.append(text[1:])
                        else:
                            self.step(text)
            for pid in list(children):
                _, status = os.waitpid(pid, 0)
                del children[pid]
                if status != 0 and not errors:
                    errors.append(f"a build worker exited with status {status}")
            if errors:
                raise BuildError(errors[0])
        finally:
            for pid, fd in children.items():  # only after an error in this process
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
                try:
                    os.close(fd)
                except OSError:
                    pass

    def build_fabric(self, stack: ExitStack) -> Rtnl:
        dc = self.dc
        fabric, fd = _enter_new(self.state, names.fabric_ns(dc.name), forwarding=True)
        stack.callback(fabric.close)
        stack.callback(os.close, fd)
        self.fabric_fd = fd
        fabric.add_bridge(names.FABRIC_SERVICES_BRIDGE, names.UPLINK_INDEX)
        fabric.add_address(names.UPLINK_INDEX, addressing.SERVICES_GATEWAY, addressing.SERVICES.prefixlen)
        fabric.flush()
        nft.run(fd, nft.NO_LINK_LOCAL_FORWARDING)
        self.step("fabric")
        for i, host in enumerate(names.EXTRA_HOSTS):
            sock, host_fd = _enter_new(self.state, names.extra_ns(dc.name, host))
            try:
                fabric.add_veth(names.extra_port(host), names.PORT_INDEX_BASE + addressing.MAX_NODES + i,
                                names.VM_IFNAME, names.NIC_INDEX, host_fd, master=names.UPLINK_INDEX,
                                peer_mac=addressing.mac(dc.name, 3, i))
                fabric.flush()
                sock.set_link(names.NIC_INDEX, up=True)
                sock.add_address(names.NIC_INDEX, addressing.EXTRA_HOST_ADDRESSES[host], addressing.SERVICES.prefixlen)
                sock.add_route("default", gateway=addressing.SERVICES_GATEWAY)
                sock.flush()
            finally:
                sock.close()
                os.close(host_fd)
            self.step(host)
        return fabric

    def build_node(self, node, fabric: Rtnl) -> None:
        dc = self.dc
        plan = self.plan.node(node.name)
        sock, node_fd = _enter_new(self.state, names.node_ns(dc.name, node.name), forwarding=True)
        try:
            # Every node's bridge has the same MAC, as a cloud's virtual gateway and metadata
            # address do everywhere: a VM moved to another node keeps valid ARP entries.
            sock.add_bridge(names.NODE_BRIDGE, names.NIC_INDEX, mac=addressing.node_bridge_mac(dc.name))
            sock.add_address(names.NIC_INDEX, addressing.METADATA_ADDRESS, addressing.LINK_LOCAL.prefixlen)
            sock.add_address(names.NIC_INDEX, plan.gateway, VM_PREFIXLEN)
            # The uplink is created from the node; its peer is born in the fabric.
            sock.add_veth(names.NODE_UPLINK, names.UPLINK_INDEX, names.node_port(node.name),
                          plan.fabric_port_index, self.fabric_fd)
            sock.add_address(names.UPLINK_INDEX, plan.uplink, UPLINK_PREFIXLEN)
            sock.add_route("default", gateway=plan.fabric_side)
            sock.flush()
            fabric.set_link(plan.fabric_port_index, up=True)
            fabric.add_address(plan.fabric_port_index, plan.fabric_side, UPLINK_PREFIXLEN)
            fabric.add_route(plan.subnet, gateway=plan.uplink)
            nft.run(node_fd, nft.NO_LINK_LOCAL_FORWARDING)
            self.step(f"node {node.name}")
            for vm in dc.vms_on(node.name):
                self.build_vm(self.plan.vm(vm.name), sock)
            # Loaded even on a node without VMs: VMs may be moved onto it later. Claimed
            # addresses are added as VMs claim them.
            nft.run(node_fd, nft.port_security(self.plan.port_security(node.name), addressing.METADATA_ADDRESS))
        finally:
            sock.close()
            os.close(node_fd)

    def build_vm(self, vm: VmPlan, node_sock: Rtnl) -> None:
        dc = self.dc
        # A VM with containers routes for them, as a Docker host does.
        sock, vm_fd = _enter_new(self.state, names.vm_ns(dc.name, vm.name), forwarding=bool(vm.containers))
        try:
            node_sock.add_veth(vm.port, vm.port_index, names.VM_IFNAME, names.NIC_INDEX, vm_fd,
                               master=names.NIC_INDEX, peer_mac=vm.mac)
            # In the same batch, before the VM's eth0 is up: no frame of it is ever learned.
            node_sock.pin_port(vm.port_index, vm.mac)
            node_sock.flush()
            sock.set_link(names.NIC_INDEX, up=True)
            for address, prefixlen in vm.addresses:
                sock.add_address(names.NIC_INDEX, address, prefixlen)
            for route in vm.routes:
                sock.add_route(route.dst, gateway=route.gateway, oif=route.oif, metric=route.metric)
            sock.flush()
            if vm.containers:
                self.build_containers(vm, sock, vm_fd)
        finally:
            sock.close()
            os.close(vm_fd)
        hosts = vm_hosts_file(dc.cloud)
        if hosts:  # the flavor's names of the metadata server (GCE: metadata.google.internal)
            for ns in (names.vm_ns(dc.name, vm.name), *(c.namespace for c in vm.containers)):
                netns.write_etc_file(ns, "hosts", hosts)
        self.step(f"vm {vm.name}")

    def build_containers(self, vm: VmPlan, vm_sock: Rtnl, vm_fd: int) -> None:
        """The VM's containers as Docker's default bridge network makes them: a bridge in the
        VM holding the containers' gateway, one veth per container whose peer is born in the
        container as its eth0, a default route through the bridge, and the VM masquerading
        what they send out of its eth0 (:func:`netsim.kernel.nft.container_nat`). A VM's
        reboot or move leaves all of this in place: it lives inside the VM's namespace."""
        bridge = vm.container_bridge
        assert bridge is not None
        opened: list[tuple[Rtnl, int]] = []
        try:
            for c in vm.containers:
                opened.append(_enter_new(self.state, c.namespace))
            vm_sock.add_bridge(names.CONTAINER_BRIDGE, names.CONTAINER_BRIDGE_INDEX, mac=bridge.mac)
            vm_sock.add_address(names.CONTAINER_BRIDGE_INDEX, bridge.address, bridge.prefixlen)
            for c, (_, fd) in zip(vm.containers, opened):
                vm_sock.add_veth(c.port, c.port_index, names.VM_IFNAME, names.NIC_INDEX, fd,
                                 master=names.CONTAINER_BRIDGE_INDEX, peer_mac=c.mac)
            vm_sock.flush()
            for c, (sock, _) in zip(vm.containers, opened):
                sock.set_link(names.NIC_INDEX, up=True)
                sock.add_address(names.NIC_INDEX, c.address, c.prefixlen)
                sock.add_route("default", gateway=c.gateway)
                sock.flush()
        finally:
            for sock, fd in opened:
                sock.close()
                os.close(fd)
        nft.run(vm_fd, nft.container_nat(bridge.subnet, names.VM_IFNAME))


def vm_hosts_file(cloud: str) -> str:
    """The ``/etc/hosts`` a VM of flavor ``cloud`` sees ("" when the flavor names no host:
    the VM then sees the host's). The flavor's factory lists its names as
    ``metadata_hostnames``; they resolve to the metadata address inside the VM only."""
    from netsim_imds import flavors
    from netsim_imds.address import METADATA_ADDRESS
    hostnames = getattr(flavors.resolve(cloud), "metadata_hostnames", ())
    if not hostnames:
        return ""
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{METADATA_ADDRESS}\t{' '.join(hostnames)}\n"


def build(dc: Datacenter, state: StateDir | None = None, progress: Progress | None = None) -> StateDir:
    """Build ``dc``; on any failure remove what was made and raise BuildError.

    Raises StateError if the datacenter is already up or left namespaces behind.
    """
    state = state or StateDir(dc.name)
    with state.locked():
        if state.exists():
            raise StateError(f"datacenter {dc.name!r} is already up ({state.status()}); "
                             f"run 'netsim down --name {dc.name}' first")
        leftovers = netns.list_names(names.dc_prefix(dc.name))
        if leftovers:
            raise StateError(f"{len(leftovers)} namespaces of datacenter {dc.name!r} are left from an earlier "
                             f"run (e.g. {leftovers[0]}); run 'netsim cleanup --name {dc.name}'")
        state.write_datacenter(dc)
        state.set_status("building")
        for name, value in ensure_neighbour_capacity(dc).items():
            state.journal("sysctl", f"net.ipv4.neigh.default.{name}={value}")
        started = time.monotonic()
        try:
            _Build(dc, state, progress).run()
        except BaseException as exc:
            state.close_journal()
            try:
                remove_namespaces([r[1] for r in state.read_journal() if r[0] == "ns"])
            except Exception as undo_exc:
                state.set_status("failed")
                raise BuildError(f"building {dc.name!r} failed ({exc}) and so did the rollback ({undo_exc}); "
                                 f"run 'netsim cleanup --name {dc.name}'") from exc
            state.remove()
            if isinstance(exc, NetsimError):
                raise BuildError(f"building {dc.name!r} failed and was rolled back: {exc}") from exc
            if isinstance(exc, Exception):
                raise BuildError(f"building {dc.name!r} failed and was rolled back: {exc!r}") from exc
            raise
        state.close_journal()
        state.journal("built", f"{time.monotonic() - started:.3f}")
        state.close_journal()
        state.set_status("up")
    return state
