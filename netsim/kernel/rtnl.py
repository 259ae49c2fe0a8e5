"""A small synchronous rtnetlink client: one plain netlink socket, batched requests.

pyroute2's ``IPRoute`` runs an asyncio loop per object and forks a helper to reach
another namespace; building a thousand namespaces that way costs 7-12 ms each. Here the
socket is opened in-process inside the target namespace (see :mod:`netsim.kernel.netns`),
pyroute2's message classes do the encoding, and many requests go out in one ``send``.
Errors come back as :class:`RtnlError` carrying the errno and the object they concern.
The queries (dumps, lookups, namespace ids) are in :mod:`netsim.kernel.rtnlquery`.
"""

from __future__ import annotations

import errno as errno_mod
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.rtnl import (RTM_DELADDR, RTM_DELNEIGH, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH,
                                   RTM_NEWNSID, RTM_NEWROUTE, RTM_SETLINK)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.nsidmsg import nsidmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netsim.kernel import netns
from netsim.kernel.rtnlquery import (IFF_UP, MAX_BATCH, NTF_MASTER, NTF_STICKY, NUD_NOARP, RtnlError, RtnlQueries,
                                     assigned_nsids, messages, nsids)

__all__ = ["IFF_UP", "MAX_BATCH", "NTF_MASTER", "NTF_STICKY", "NUD_NOARP", "Rtnl", "RtnlError", "assigned_nsids",
           "nsids"]

_NEW = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_SET = NLM_F_REQUEST | NLM_F_ACK


class Rtnl(RtnlQueries):
    """A NETLINK_ROUTE socket bound to one namespace; requests queue until :meth:`flush`.

    ``tolerate`` lists errnos that are expected for a queued request (for example EEXIST
    when re-running an idempotent step); any other error raises :class:`RtnlError`.
    """

    def __init__(self, where: str, sock: socket.socket) -> None:
        self.where = where
        self._sock = sock
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, 0))
        self._seq = 0
        self._queue: list[bytes] = []
        self._pending: dict[int, tuple[str, frozenset[int]]] = {}

    @classmethod
    def in_namespace(cls, name: str) -> "Rtnl":
        """Open a socket inside the named namespace."""
        return cls(name, netns.socket_in(name, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))

    @classmethod
    def here(cls, where: str) -> "Rtnl":
        """Open a socket in the calling thread's current namespace."""
        return cls(where, socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))

    def close(self) -> None:
        """Close the socket (pending requests are dropped)."""
        self._sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queueing -------------------------------------------------------------------

    def _put(self, msg, kind: int, flags: int, what: str, tolerate: tuple[int, ...] = ()) -> None:
        self._seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._queue.append(bytes(msg.data))
        self._pending[self._seq] = (what, frozenset(tolerate))
        if len(self._queue) >= MAX_BATCH:
            self.flush()

    def request(self, msg, kind: int, flags: int, what: str, tolerate: tuple[int, ...] = ()) -> None:
        """Queue any pyroute2 message (e.g. a ``tcmsg`` of :mod:`netsim.kernel.qdisc`);
        ``what`` names it in errors, ``tolerate`` lists the errnos that are fine."""
        self._put(msg, kind, flags, what, tolerate)

    def flush(self) -> None:
        """Send every queued request in one write and wait for all acknowledgements."""
        if not self._queue:
            return
        self._sock.send(b"".join(self._queue))
        self._queue.clear()
        first_error: RtnlError | None = None
        while self._pending:
            data = self._sock.recv(1 << 16)
            for kind, seq, body in messages(data):
                if kind != NLMSG_ERROR or seq not in self._pending:
                    continue
                what, tolerate = self._pending.pop(seq)
                code = -struct.unpack_from("=i", body)[0]
                if code and code not in tolerate and first_error is None:
                    first_error = RtnlError(code, what, self.where)
        if first_error is not None:
            raise first_error

    # -- links ----------------------------------------------------------------------

    def add_bridge(self, name: str, index: int, mac: str | None = None) -> None:
        """Create an up bridge with STP off and no forward delay."""
        msg = ifinfmsg()
        msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
        data = {"attrs": [("IFLA_BR_STP_STATE", 0), ("IFLA_BR_FORWARD_DELAY", 0)]}
        attrs = [("IFLA_IFNAME", name),
                 ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge"), ("IFLA_INFO_DATA", data)]})]
        if mac:
            attrs.append(("IFLA_ADDRESS", mac))
        msg["attrs"] = attrs
        self._put(msg, RTM_NEWLINK, _NEW, f"creating bridge {name}")

    def add_veth(self, name: str, index: int, peer_name: str, peer_index: int, peer_ns_fd: int,
                 *, master: int | None = None, mac: str | None = None, peer_mac: str | None = None,
                 ) -> None:
        """Create a veth pair, this end up, whose peer is born inside namespace ``peer_ns_fd``.

        The peer starts down: the kernel refuses to open it (ENOTCONN) before the pair
        exists, so the namespace that holds it brings it up.
        """
        peer: dict = {"index": peer_index, "attrs": [("IFLA_IFNAME", peer_name), ("IFLA_NET_NS_FD", peer_ns_fd)]}
        if peer_mac:
            peer["attrs"].append(("IFLA_ADDRESS", peer_mac))
        msg = ifinfmsg()
        msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
        attrs = [("IFLA_IFNAME", name),
                 ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                              ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]})]
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if mac:
            attrs.append(("IFLA_ADDRESS", mac))
        msg["attrs"] = attrs
        self._put(msg, RTM_NEWLINK, _NEW, f"creating veth {name} (peer {peer_name})")

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 ns_fd: int | None = None, name: str | None = None, what: str = "") -> None:
        """Change a link: state, bridge master (0 = none), namespace, name."""
        msg = ifinfmsg()
        msg["index"] = index
        if up is not None:
            msg["flags"], msg["change"] = (IFF_UP if up else 0), IFF_UP
        attrs = []
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if ns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", ns_fd))
        if name is not None:
            attrs.append(("IFLA_IFNAME", name))
        msg["attrs"] = attrs
        self._put(msg, RTM_SETLINK, _SET, what or f"changing link #{index}")

    def pin_port(self, index: int, mac: str) -> None:
        """Make bridge port ``index`` a VM port whose frames can never reprogram the bridge.

        The bridge learns a frame's source MAC before any netfilter hook sees the frame,
        so one spoofed frame would move another VM's MAC to this port. Instead, as a
        cloud's virtual switch knows each port's MAC: learning is off, unknown unicast is
        not flooded to the port (a frame for no known MAC reaches no VM), and ``mac`` gets
        a static, sticky forwarding entry on the port. Static entries survive the port or
        the bridge going down and vanish with the port. Idempotent (the entry is replaced).
        """
        msg = ifinfmsg()
        msg["index"] = index
        port = {"attrs": [("IFLA_BRPORT_LEARNING", 0), ("IFLA_BRPORT_UNICAST_FLOOD", 0)]}
        msg["attrs"] = [("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"),
                                                     ("IFLA_INFO_SLAVE_DATA", port)]})]
        # RTM_NEWLINK on an existing link (no NLM_F_CREATE) changes its bridge-port options.
        self._put(msg, RTM_NEWLINK, _SET, f"turning learning off on bridge port #{index}")
        fdb = ndmsg()
        fdb["family"], fdb["ifindex"] = socket.AF_BRIDGE, index
        fdb["state"], fdb["flags"] = NUD_NOARP, NTF_MASTER | NTF_STICKY
        fdb["attrs"] = [("NDA_LLADDR", mac)]
        self._put(fdb, RTM_NEWNEIGH, _SET | NLM_F_CREATE | NLM_F_REPLACE,
                  f"adding the static forwarding entry {mac} on bridge port #{index}")

    # -- addresses and routes --------------------------------------------------------

    def _addr(self, kind: int, flags: int, index: int, address: str, prefixlen: int,
              tolerate: tuple[int, ...]) -> None:
        msg = ifaddrmsg()
        msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, prefixlen, index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        verb = "adding" if kind == RTM_NEWADDR else "removing"
        self._put(msg, kind, flags, f"{verb} address {address}/{prefixlen} on link #{index}", tolerate)

    def add_address(self, index: int, address: str, prefixlen: int, *, exist_ok: bool = False) -> None:
        """Add an IPv4 address to a link."""
        self._addr(RTM_NEWADDR, _NEW, index, address, prefixlen, (errno_mod.EEXIST,) if exist_ok else ())

    def del_address(self, index: int, address: str, prefixlen: int, *, missing_ok: bool = True) -> None:
        """Remove an IPv4 address from a link."""
        self._addr(RTM_DELADDR, _SET, index, address, prefixlen,
                   (errno_mod.EADDRNOTAVAIL, errno_mod.ENODEV) if missing_ok else ())

    def _route(self, kind: int, flags: int, dst: str, *, gateway: str | None, oif: int | None,
               tolerate: tuple[int, ...], metric: int | None = None) -> None:
        net, _, plen = dst.partition("/")
        msg = rtmsg()
        msg["family"], msg["table"], msg["proto"], msg["type"] = socket.AF_INET, 254, 4, 1
        msg["dst_len"] = int(plen or 32) if net != "default" else 0
        # A delete matches routes of any scope (RT_SCOPE_NOWHERE, as ``ip route del`` does):
        # with the add's scope, deleting a gatewayed route named without its gateway
        # would match nothing and quietly leave it.
        msg["scope"] = 255 if kind == RTM_DELROUTE else 0 if gateway else 253
        attrs = []
        if net != "default":
            attrs.append(("RTA_DST", net))
        if gateway:
            attrs.append(("RTA_GATEWAY", gateway))
        if oif is not None:
            attrs.append(("RTA_OIF", oif))
        if metric is not None:
            attrs.append(("RTA_PRIORITY", metric))
        msg["attrs"] = attrs
        verb = "adding" if kind == RTM_NEWROUTE else "removing"
        self._put(msg, kind, flags, f"{verb} route {dst}" + (f" via {gateway}" if gateway else ""), tolerate)

    def add_route(self, dst: str, *, gateway: str | None = None, oif: int | None = None,
                  exist_ok: bool = False, metric: int | None = None) -> None:
        """Add a route (``dst`` is ``default`` or ``a.b.c.d/len``)."""
        self._route(RTM_NEWROUTE, _NEW, dst, gateway=gateway, oif=oif,
                    tolerate=(errno_mod.EEXIST,) if exist_ok else (), metric=metric)

    def del_route(self, dst: str, *, gateway: str | None = None, oif: int | None = None) -> None:
        """Remove a route; a missing route is not an error."""
        self._route(RTM_DELROUTE, _SET, dst, gateway=gateway, oif=oif, tolerate=(errno_mod.ESRCH,))

    def proxy_neighbour(self, ifindex: int, address: str, *, add: bool = True) -> None:
        """Answer ARP for ``address`` on ``ifindex`` (proxy ARP for one address), or stop."""
        msg = ndmsg()
        msg["family"], msg["ifindex"], msg["flags"] = socket.AF_INET, ifindex, 0x08  # NTF_PROXY
        msg["attrs"] = [("NDA_DST", address)]
        if add:
            self._put(msg, RTM_NEWNEIGH, _NEW, f"proxying ARP for {address}", (errno_mod.EEXIST,))
        else:
            self._put(msg, RTM_DELNEIGH, _SET, f"ending proxy ARP for {address}",
                      (errno_mod.ENOENT, errno_mod.ESRCH))

    def assign_nsid(self, ns_fd: int) -> None:
        """Give the namespace ``ns_fd`` an id in this socket's namespace (``ip netns set NS auto``)."""
        msg = nsidmsg()
        msg["attrs"] = [("NETNSA_FD", ns_fd), ("NETNSA_NSID", 0xFFFFFFFF)]  # -1: the kernel chooses
        self._put(msg, RTM_NEWNSID, _NEW, f"assigning an nsid to namespace fd {ns_fd}", (errno_mod.EEXIST,))
