"""The read side of :class:`netsim.kernel.rtnl.Rtnl`: dumps and single-object lookups,
and the namespace ids that teardown waits on; also the netlink framing both sides share.

Split from :mod:`netsim.kernel.rtnl` (the batched write side) to keep each under 400 lines;
use it through :class:`~netsim.kernel.rtnl.Rtnl`.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_GETADDR, RTM_GETLINK, RTM_GETNEIGH, RTM_GETNSID
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.nsidmsg import nsidmsg

from typing import TYPE_CHECKING

from netsim.errors import NetsimError

if TYPE_CHECKING:
    from netsim.kernel.rtnl import Rtnl

IFF_UP = 0x1
NUD_NOARP = 0x40    # a bridge FDB entry in this state is "static": no ageing, not learned
NTF_MASTER = 0x04   # the FDB entry belongs to the bridge (the port's master)
NTF_STICKY = 0x40   # a sticky FDB entry never moves to another port, even by learning
HDR = struct.Struct("=IHHII")
"""A netlink message header: length, type, flags, sequence, port id."""
MAX_BATCH = 64  # requests per send: their acknowledgements must fit the receive buffer


class RtnlError(NetsimError):
    """A netlink request failed; ``errno`` is the kernel's error, ``what`` the object."""

    def __init__(self, code: int, what: str, where: str) -> None:
        self.errno, self.what, self.where = code, what, where
        super().__init__(f"{what} in {where}: {os.strerror(code)}")


class RtnlQueries:
    """Queries of a NETLINK_ROUTE socket (mixed into :class:`~netsim.kernel.rtnl.Rtnl`, which
    provides ``_sock``, ``_seq``, ``where`` and ``flush``)."""

    _sock: socket.socket
    _seq: int
    _queue: list[bytes]
    where: str

    def flush(self) -> None:
        """Send what is queued (:meth:`netsim.kernel.rtnl.Rtnl.flush` does it)."""
        raise NotImplementedError

    def _dump(self, msg, kind: int, cls) -> list:
        self.flush()
        self._seq += 1
        msg["header"]["type"], msg["header"]["flags"] = kind, NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(bytes(msg.data))
        out = []
        while True:
            data = self._sock.recv(1 << 16)
            for mkind, seq, body in messages(data):
                if seq != self._seq:
                    continue
                if mkind == NLMSG_DONE:
                    return out
                if mkind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code == errno_mod.EINTR:  # "dump was interrupted": the caller may retry
                        raise RtnlError(code, "dumping", self.where)
                    if code:
                        raise RtnlError(code, "dumping", self.where)
                    continue
                parsed = cls(HDR.pack(len(body) + 16, mkind, 0, seq, 0) + body)
                parsed.decode()
                out.append(parsed)

    def _get(self, msg, kind: int, cls):
        """One non-dump request; the decoded answer, or None if the kernel has no such object."""
        self.flush()
        self._seq += 1
        msg["header"]["type"], msg["header"]["flags"] = kind, NLM_F_REQUEST
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(bytes(msg.data))
        while True:
            for mkind, seq, body in messages(self._sock.recv(1 << 16)):
                if seq != self._seq:
                    continue
                if mkind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code in (errno_mod.ENOENT, errno_mod.ENODEV, errno_mod.ESRCH):
                        return None
                    raise RtnlError(code, "querying", self.where)
                parsed = cls(HDR.pack(len(body) + 16, mkind, 0, seq, 0) + body)
                parsed.decode()
                return parsed

    def neighbour_mac(self, ifindex: int, address: str) -> str | None:
        """The MAC the neighbour table holds for ``address`` on ``ifindex`` (one lookup, no dump)."""
        msg = ndmsg()
        msg["family"], msg["ifindex"] = socket.AF_INET, ifindex
        msg["attrs"] = [("NDA_DST", address)]
        found = self._get(msg, RTM_GETNEIGH, ndmsg)
        return found.get_attr("NDA_LLADDR") if found is not None else None

    def fdb_port(self, bridge: int, mac: str, *, static_only: bool = False) -> int | None:
        """The bridge port to which ``bridge`` forwards ``mac`` (one lookup, no dump); with
        ``static_only``, None unless the entry is static (installed, not learned)."""
        msg = ndmsg()
        msg["family"] = socket.AF_BRIDGE
        msg["attrs"] = [("NDA_LLADDR", mac), ("NDA_MASTER", bridge)]
        found = self._get(msg, RTM_GETNEIGH, ndmsg)
        if found is None or (static_only and not found["state"] & NUD_NOARP):
            return None
        return found["ifindex"]

    def port_options(self, index: int) -> dict[str, int]:
        """The bridge-port options of link ``index`` (``IFLA_BRPORT_*`` without the prefix,
        lowercase: ``learning``, ``unicast_flood``, ...); empty if it is no bridge port."""
        for msg in self._dump(ifinfmsg(), RTM_GETLINK, ifinfmsg):
            if msg["index"] != index:
                continue
            info = msg.get_attr("IFLA_LINKINFO")
            data = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
            if data is None:
                return {}
            return {name[len("IFLA_BRPORT_"):].lower(): value for name, value in data["attrs"]
                    if isinstance(value, int)}
        return {}

    def fdb_entries(self, bridge: int) -> list[tuple[str, int, bool]]:
        """(MAC, port index, static) of every forwarding entry of ``bridge`` on its ports
        (the bridge's own local entries left out)."""
        msg = ndmsg()
        msg["family"] = socket.AF_BRIDGE
        out = []
        for m in self._dump(msg, RTM_GETNEIGH, ndmsg):
            if m.get_attr("NDA_MASTER") != bridge or m["ifindex"] == bridge or m["state"] & 0x80:  # NUD_PERMANENT
                continue
            out.append((m.get_attr("NDA_LLADDR"), m["ifindex"], bool(m["state"] & NUD_NOARP)))
        return out

    def links(self) -> dict[str, int]:
        """Map of link name to index in this namespace."""
        found = {}
        for msg in self._dump(ifinfmsg(), RTM_GETLINK, ifinfmsg):
            found[msg.get_attr("IFLA_IFNAME")] = msg["index"]
        return found

    def link_state(self, index: int) -> tuple[str | None, bool, str | None]:
        """(name, administratively up, MAC) of one link."""
        for msg in self._dump(ifinfmsg(), RTM_GETLINK, ifinfmsg):
            if msg["index"] == index:
                return msg.get_attr("IFLA_IFNAME"), bool(msg["flags"] & IFF_UP), msg.get_attr("IFLA_ADDRESS")
        return None, False, None

    def addresses(self) -> list[tuple[int, str, int]]:
        """(link index, address, prefix length) of every IPv4 address here."""
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        return [(m["index"], m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in self._dump(msg, RTM_GETADDR, ifaddrmsg)]


def messages(data: bytes):
    """Yield (type, sequence, body) for each netlink message in a datagram."""
    off = 0
    while off + 16 <= len(data):
        length, kind, _flags, seq, _pid = HDR.unpack_from(data, off)
        if length < 16:
            break
        yield kind, seq, data[off + 16: off + length]
        off += (length + 3) & ~3


def nsids(root: "Rtnl", fds: list[int]) -> list[int]:
    """The id each namespace (open as fd) has in ``root``'s namespace, assigning missing ones.

    Ids let :func:`netsim.kernel.teardown.remove_namespaces` hear the kernel's RTM_DELNSID,
    sent when a namespace is really destroyed.
    """

    for fd in fds:
        root.assign_nsid(fd)
    root.flush()
    return [n for i in range(0, len(fds), MAX_BATCH) for n in _nsid_batch(root, fds[i:i + MAX_BATCH])]


def _nsid_batch(root: "Rtnl", fds: list[int]) -> list[int]:
    first = root._seq + 1
    for fd in fds:
        msg = nsidmsg()
        msg["attrs"] = [("NETNSA_FD", fd)]
        root._seq += 1
        msg["header"]["type"], msg["header"]["flags"] = RTM_GETNSID, NLM_F_REQUEST
        msg["header"]["sequence_number"] = root._seq
        msg.encode()
        root._queue.append(bytes(msg.data))
    root._sock.send(b"".join(root._queue))
    root._queue.clear()
    found: dict[int, int] = {}
    while len(found) < len(fds):
        for kind, seq, body in messages(root._sock.recv(1 << 16)):
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", body)[0]
                raise RtnlError(code, "reading a namespace id", root.where)
            parsed = nsidmsg(HDR.pack(len(body) + 16, kind, 0, seq, 0) + body)
            parsed.decode()
            found[seq] = parsed.get_attr("NETNSA_NSID")
    return [found[first + i] for i in range(len(fds))]


def assigned_nsids(root: "Rtnl") -> set[int]:
    """Every namespace id assigned in ``root``'s namespace; an id goes when its namespace dies."""
    return {m.get_attr("NETNSA_NSID") for m in root._dump(nsidmsg(), RTM_GETNSID, nsidmsg)}
