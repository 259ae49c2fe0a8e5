"""Caller identity from the node's neighbour table and FDB: what is cached, what is retried.

A legitimate VM must never get 403 for a lookup that could be retried (issue 10, item 6):
a lookup that found nothing settled is asked again before the caller is refused, and a
refusal is never cached, so the next connection asks the kernel again.
"""

from __future__ import annotations

import errno

import pytest

from netsim.kernel.rtnl import RtnlError
from netsim.model import grid, names
from netsim.model.plan import plan_of
from netsim.runtime import identity
from netsim.runtime.identity import NeighbourResolver

DC = grid("idt", 1, 2, linklocal="static")
PLAN = plan_of(DC)
VM1 = PLAN.vm("vm1")
PEER = "169.254.1.1"


class FakeRtnl:
    """The node's neighbour table and FDB, answering from scripts: each lookup pops the next
    answer of its script (the last one stays), an exception is raised."""

    def __init__(self, macs: list, ports: list | None = None) -> None:
        self.macs, self.ports = list(macs), list(ports or [VM1.port_index])
        self.lookups = 0
        self.closed = False

    @staticmethod
    def _next(script: list):
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def neighbour_mac(self, ifindex: int, address: str):
        assert ifindex == names.NIC_INDEX
        self.lookups += 1
        return self._next(self.macs)

    def fdb_port(self, bridge: int, mac: str, *, static_only: bool = False):
        assert static_only and mac == VM1.mac
        return self._next(self.ports)

    def close(self) -> None:
        self.closed = True


def resolver(*socks: FakeRtnl) -> tuple[NeighbourResolver, list[float], list[FakeRtnl]]:
    """A resolver of node n1 over ``socks`` (a new one each time it reopens), and its pauses."""
    pauses: list[float] = []
    opened: list[FakeRtnl] = []

    def open_rtnl() -> FakeRtnl:
        sock = socks[min(len(opened), len(socks) - 1)]
        opened.append(sock)
        return sock

    return NeighbourResolver(DC, "n1", open_rtnl=open_rtnl, sleep=pauses.append), pauses, opened


def test_a_lookup_that_fails_once_then_succeeds_does_not_refuse_the_next_connection():
    # The first connection's every attempt finds no resolved entry; the kernel then has it.
    attempts = 1 + len(identity.RETRY_DELAYS)
    sock = FakeRtnl([None] * attempts + [VM1.mac])
    r, pauses, _ = resolver(sock)
    assert r(PEER) is None
    assert pauses == list(identity.RETRY_DELAYS)
    # The old resolver cached the refusal for 10 s: this connection got 403 too.
    caller = r(PEER)
    assert caller is not None and caller.name == "vm1" and caller.link_local == PEER


def test_an_unresolved_neighbour_is_asked_again_within_the_same_connection():
    sock = FakeRtnl([None, VM1.mac])
    r, pauses, _ = resolver(sock)
    caller = r(PEER)
    assert caller is not None and caller.name == "vm1"
    assert pauses == [identity.RETRY_DELAYS[0]] and sock.lookups == 2


def test_a_missing_static_fdb_entry_is_asked_again():
    sock = FakeRtnl([VM1.mac], ports=[None, VM1.port_index])
    r, pauses, _ = resolver(sock)
    assert r(PEER).name == "vm1"
    assert pauses == [identity.RETRY_DELAYS[0]]


def test_a_netlink_error_reopens_the_socket_and_asks_again():
    broken = FakeRtnl([RtnlError(errno.ENOBUFS, "querying", "n1")])
    fresh = FakeRtnl([VM1.mac])
    r, _, opened = resolver(broken, fresh)
    assert r(PEER).name == "vm1"
    assert broken.closed and opened == [broken, fresh]


@pytest.mark.parametrize("macs, ports", [
    (["02:00:00:00:99:99"], None),              # a MAC that is no VM's
    ([VM1.mac], [VM1.port_index + 1]),           # a VM's MAC pinned on another VM's port
], ids=["unknown-mac", "wrong-port"])
def test_a_settled_refusal_is_immediate_and_never_cached(macs, ports):
    sock = FakeRtnl(macs, ports)
    r, pauses, _ = resolver(sock)
    assert r(PEER) is None and pauses == []
    assert r(PEER) is None and sock.lookups == 2  # asked again: nothing was cached


def test_pauses_are_bounded_per_second():
    sock = FakeRtnl([None])  # never resolves
    r, pauses, _ = resolver(sock)
    for i in range(100):
        assert r(f"169.254.2.{i}") is None
    # A peer that never resolves (a hostile VM that stops answering ARP) cannot stall the loop.
    assert 0 < sum(pauses) <= identity.RETRY_BUDGET + 1e-9
    assert sock.lookups == 100 + len(pauses)  # one lookup each, one more after every pause


def test_a_found_vm_is_cached_until_invalidated():
    sock = FakeRtnl([VM1.mac])
    r, _, _ = resolver(sock)
    first = r(PEER)
    assert r(PEER) is first and sock.lookups == 1
    r.invalidate()
    assert r(PEER) == first and sock.lookups == 2


@pytest.mark.root
def test_a_vm_whose_neighbour_entry_was_gone_is_known_once_it_is_back(datacenter_factory, host_exec):
    """Across real namespaces: the node loses the VM's neighbour entry (as a forced garbage
    collection under a full neighbour table does), a lookup then refuses it; once the entry
    is back, the next lookup knows the VM (the old resolver refused it for 10 s more)."""
    dc = datacenter_factory(grid("idr", 1, 1, linklocal="static"))
    vm = dc.topology.vms[0]
    address = plan_of(dc.topology).vm(vm.name).static_link_local
    r = NeighbourResolver(dc.topology, "n1")
    try:
        assert host_exec(vm.name, "ping", "-c1", "-W2", "169.254.169.254").returncode == 0
        caller = r(address)
        assert caller is not None and caller.name == vm.name
        r.invalidate()
        gone = host_exec("node:n1", "ip", "neigh", "del", address, "dev", "br0")
        assert gone.returncode == 0, gone.stderr
        assert r(address) is None
        assert host_exec(vm.name, "ping", "-c1", "-W2", "169.254.169.254").returncode == 0
        caller = r(address)
        assert caller is not None and caller.name == vm.name
    finally:
        r.close()
