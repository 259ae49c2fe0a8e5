"""The datacenter's RFC 3927 claims: every VM's link-local address, claimed over raw ARP
by one :class:`~netsim.linklocal.driver.LinkLocalDriver` running in a daemon thread."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from netsim.model import names
from netsim.kernel import nft
from netsim.errors import NetsimError
from netsim.linklocal.constants import RFC_TIMERS, Timers
from netsim.linklocal.driver import LinkLocalDriver
from netsim.linklocal.machine import Bind
from netsim.model import addressing
from netsim.model.topology import Datacenter
from netsim.runtime import commands

log = logging.getLogger("netsim.runtime.claims")
FAST_FACTOR = 10.0  # timers = "fast": every RFC 3927 interval divided by this


def timers_for(dc: Datacenter) -> Timers:
    """The datacenter's timer profile: the RFC's, or the fast one (not conformant)."""
    return RFC_TIMERS if dc.timers == "rfc" else RFC_TIMERS.scaled(FAST_FACTOR)


class LinkLocalService:
    """Claims a link-local address for every VM of a datacenter, from one thread."""

    def __init__(self, dc: Datacenter, node_of=None, vms: list[str] | None = None) -> None:
        self.dc = dc
        self.vms = [v.name for v in dc.vms] if vms is None else vms
        self.node_of = node_of or (lambda vm: dc.vm(vm).node)
        self.on_change = None  # called with a VM's name whenever it binds or releases an address
        self.timers = timers_for(dc)
        self.driver = LinkLocalDriver(timers=self.timers, reserved=frozenset({addressing.METADATA_ADDRESS}),
                                      listener=self._claimed)
        self._stop = threading.Event()
        self._nft_queue: queue.Queue = queue.Queue()
        self._nft_thread = threading.Thread(target=self._nft_worker, name="portsec", daemon=True)
        self._thread = threading.Thread(target=self.driver.run, args=(self._stop,), name="linklocal", daemon=True)

    def _claimed(self, vm: str, action) -> None:
        """Tell the node's port security who owns a newly bound (or released) address.

        Runs on the driver's loop, so the nft work goes to another thread, batched per
        node: an address nobody owns yet is free to announce, so the owner's own first
        announcement never waits for it.
        """
        commands = nft.claim_commands(names.vm_port(vm), action.address, isinstance(action, Bind))
        self._nft_queue.put((self.node_of(vm), commands))
        if self.on_change is not None:
            self.on_change(vm)

    def _nft_worker(self) -> None:
        while True:
            item = self._nft_queue.get()
            if item is None:
                return
            batch: dict[str, list[str]] = {}
            while item is not None:
                batch.setdefault(item[0], []).append(item[1])
                try:
                    item = self._nft_queue.get_nowait()
                except queue.Empty:
                    item = None
            for node, commands in batch.items():
                try:
                    nft.run(names.node_ns(self.dc.name, node), "".join(commands))
                except nft.NftError:
                    # One bad element (already there, already gone) fails the batch: apply one by one.
                    for command in commands:
                        try:
                            nft.run(names.node_ns(self.dc.name, node), command)
                        except nft.NftError as exc:
                            log.info("port security of %s: %s", node, exc)
                except NetsimError as exc:  # the node is gone
                    log.info("port security of %s: %s", node, exc)

    def start(self) -> None:
        """Open every VM's ARP socket, start every claim, and run the loop."""
        for vm in self.vms:
            self.driver.add(vm, names.vm_ns(self.dc.name, vm), names.VM_IFNAME,
                            self.dc.address_plan.vm(vm).mac)
        self._nft_thread.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and close the sockets."""
        self._stop.set()
        self._thread.join(5)
        self.driver.close()
        self._nft_queue.put(None)
        self._nft_thread.join(5)

    def address_of(self, vm: str) -> str | None:
        """The VM's bound address, or None while it has none."""
        return self.driver.status().get(vm, (None, None))[1]

    def remove(self, vm: str) -> None:
        """Stop claiming for a VM that is being deleted."""
        self.driver.remove(vm)

    def link_event(self, vm: str, up: bool) -> None:
        """The VM's link went down or up: a link that comes back claims again."""
        self.driver.link_event(vm, up)

    def status(self) -> dict[str, dict]:
        """JSON-ready ``{vm: {"state", "address", "timers"}}``."""
        profile = "rfc" if self.timers.conformant else f"fast (RFC / {FAST_FACTOR:g}, not RFC 3927 conformant)"
        return {vm: {"state": state.name if hasattr(state, "name") else str(state), "address": address,
                     "timers": profile}
                for vm, (state, address) in self.driver.status().items()}


# -- control commands of the claims (netsim.runtime.commands) ---------------------------------

@dataclass(frozen=True)
class LinkArgs:
    """``link``: a VM's link went down or up (``netsim link VM up|down`` already set it)."""

    vm: str = commands.name("vm")
    up: bool = commands.flag()


@commands.command("link", LinkArgs)
def link_command(ctx: commands.Context, a: LinkArgs) -> dict:
    """Tell the VM's claim that its link went down or up: a link that comes back claims again."""
    if ctx.linklocal is None:
        raise commands.CommandError('link-local claiming is off (linklocal = "static"): there is no claim to tell')
    ctx.linklocal.link_event(a.vm, a.up)
    return {}


@commands.command("linklocal")
def linklocal_command(ctx: commands.Context, a: commands.NoArguments) -> dict:
    """Every VM's claim: ``{"vms": {vm: {"state", "address", "timers"}}}`` (empty when static)."""
    return {"vms": ctx.linklocal.status() if ctx.linklocal else {}}
