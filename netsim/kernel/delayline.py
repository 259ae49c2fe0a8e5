"""The kernel side of the delay line: netem's job on a kernel without netem (issue 13).

A VM's port (the node-side end of its veth) gets a ``clsact`` qdisc whose egress hook
has one u32 filter matching the frames for the VM's MAC, with a ``mirred`` action
redirecting them to the node's veth pair of the project's prefix (frames go into
``nsim-dq`` and come out of ``nsim-dr``: one pair per node, so a fault on a thousand VMs
creates no thousand links). netsim reads them there with an AF_PACKET socket, tells the
VM by the destination MAC, holds them (:mod:`netsim.runtime.linkemu`) and writes them on
the VM's port with a second AF_PACKET socket that has ``PACKET_QDISC_BYPASS``: the frame
goes straight to the veth's transmit, skipping the qdisc layer and its tc egress hook,
so it is not redirected again (no loop). Broadcasts (an ARP request) are not delayed:
the copies of every port would look the same on the tap.

Like netsim's netem path, the line works on the direction toward the VM (a ping's round
trip sees the latency once; the metadata service's answers are delayed): the VM's side
(the egress of its ``eth0``) would need a socket per VM namespace and a second hop for
every frame, for no behaviour a client could tell apart from the same delay on the way back.

Both sockets use ``PACKET_VNET_HDR``: the kernel hands over a frame as it is, a TCP
segment still to be segmented or whose checksum is still to be computed (veth offloads
both), with the virtio header that says so; writing it back with that header keeps it
so. Everything is in the node's namespace: ``down`` and ``cleanup`` remove it with it.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_DELQDISC, RTM_NEWQDISC, RTM_NEWTFILTER
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.tcmsg import cls_u32, tcmsg

from netsim.errors import NamespaceError
from netsim.kernel import netns
from netsim.kernel.rtnl import Rtnl
from netsim.model.names import PREFIX

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
VNET_HEADER = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VIRTIO_NET_HDR_GSO_NONE = 0
MAX_FRAME = VNET_HEADER.size + 65536 + 14

TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
CLSACT_EGRESS = 0xFFFFFFF3  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
FILTER_PRIO = 1


TAP_INTO, TAP_OUT = f"{PREFIX}dq", f"{PREFIX}dr"
"""The node's veth pair of the delay line: frames are redirected into the first and read
from the second (one pair per node namespace, whatever the number of lines)."""

_DUMMY_OFFSETS = (200, 204)  # where pyroute2 is told the MAC is (it encodes offsets 0-255 only)


class _MacFilter(tcmsg):
    """A u32 filter matching the destination MAC, 14 and 10 bytes before the network
    header (u32 offsets count from it): pyroute2's key parser knows no negative offset,
    so the keys are encoded at dummy offsets and patched (``patches``: mask, value, dummy, real)."""

    patches: list[tuple[int, int, int, int]] = []

    def encode(self):
        super().encode()
        for mask, value, dummy, real in self.patches:
            key = struct.pack(">II", mask, value)
            at = self.data.find(key + struct.pack("i", dummy))
            assert at >= 0, "pyroute2 encoded the u32 keys differently"
            self.data[at + 8:at + 12] = struct.pack("i", real)
        return self


def _clsact(index: int) -> tcmsg:
    msg = tcmsg()
    msg["index"], msg["parent"], msg["handle"] = index, TC_H_CLSACT, CLSACT_HANDLE
    msg["attrs"] = [("TCA_KIND", "clsact")]
    return msg


def _redirect(index: int, mac: bytes, to: int) -> tcmsg:
    """Every frame leaving port ``index`` for ``mac`` goes to link ``to`` instead
    (broadcasts and frames for other MACs pass: they could not be told apart on the tap)."""
    msg = _MacFilter()
    msg["index"], msg["parent"] = index, CLSACT_EGRESS
    msg["info"] = (FILTER_PRIO << 16) | socket.htons(ETH_P_ALL)
    high, low = struct.unpack(">IH", mac)
    msg.patches = [(0xFFFFFFFF, high, _DUMMY_OFFSETS[0], -14), (0xFFFF0000, low << 16, _DUMMY_OFFSETS[1], -10)]
    keys = [f"0x{high:08x}/0xffffffff+{_DUMMY_OFFSETS[0]}", f"0x{low:04x}0000/0xffff0000+{_DUMMY_OFFSETS[1]}"]
    options = cls_u32.get_parameters({"target": 0, "keys": keys,
                                      "action": {"kind": "mirred", "direction": "egress", "action": "redirect",
                                                 "ifindex": to}})
    msg["attrs"] = [("TCA_KIND", "u32"), ("TCA_OPTIONS", options)]
    return msg


class _Encoded:
    """A filter message encoded by patching a template pyroute2 encoded once (pyroute2
    takes 0.4 ms a filter: a thousand ports were half a second of CPU under the GIL);
    :class:`netsim.kernel.rtnl.Rtnl` sets its header, :meth:`encode` writes it."""

    _template: tuple[bytes, int, int, int, int] | None = None  # bytes; offsets of index, MAC high, low, target

    def __init__(self, index: int, mac: bytes, to: int) -> None:
        if _Encoded._template is None:
            sample = _redirect(0x5A5A5A5A, bytes.fromhex("a1b2c3d4e5f6"), 0x6B6B6B6B)
            sample.encode()
            raw = bytes(sample.data)
            _Encoded._template = (raw, raw.index(struct.pack("=I", 0x5A5A5A5A)), raw.index(bytes.fromhex("a1b2c3d4")),
                                  raw.index(bytes.fromhex("e5f60000")), raw.index(struct.pack("=I", 0x6B6B6B6B)))
        raw, at_index, at_high, at_low, at_to = _Encoded._template
        self.data = bytearray(raw)
        struct.pack_into("=I", self.data, at_index, index)
        self.data[at_high:at_high + 4] = mac[:4]
        self.data[at_low:at_low + 2] = mac[4:]
        struct.pack_into("=I", self.data, at_to, to)
        self._header: dict[str, int] = {}

    def __getitem__(self, key: str) -> dict[str, int]:
        assert key == "header"
        return self._header

    def encode(self) -> "_Encoded":
        """Write the header Rtnl set (type, flags, sequence number) into the bytes."""
        h = self._header
        struct.pack_into("=HHI", self.data, 4, h["type"], h["flags"], h["sequence_number"])
        return self


def _del_link(name: str) -> ifinfmsg:
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name)]
    return msg


def _unplug(rt: Rtnl, index: int, name: str) -> None:
    rt.request(_clsact(index), RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, f"removing the delay line of {name}",
               tolerate=(errno.ENOENT, errno.EINVAL, errno.ENODEV))


def unplug_ports(namespace: str, ports: list[tuple[int, str]], *, tap_too: bool = False,
                 if_tap: bool = False) -> None:
    """In one batch: no delay line on these ports (index, name) of ``namespace`` any more,
    whether one was there or not (a daemon killed with SIGKILL leaves its redirects), and
    (``tap_too``) no tap; ``if_tap``: only if the node has a tap (there is no redirect
    without one: a daemon starting on a clean node sends nothing). A namespace gone is
    fine: nothing of it is left."""
    try:
        rt = Rtnl.in_namespace(namespace)
    except NamespaceError:
        return
    with rt:
        if if_tap and TAP_INTO not in rt.links():
            return
        for index, name in ports:
            _unplug(rt, index, name)
        if tap_too:
            rt.request(_del_link(TAP_INTO), RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, "removing the delay line's tap",
                       tolerate=(errno.ENODEV,))
        rt.flush()


class Tap:
    """One node's delay line in the kernel: the veth pair, a socket reading what the
    ports redirect to it (virtio header included) and one writing on any port."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        with netns.entered(namespace):
            with Rtnl.here(namespace) as rt:
                # A pair left by a daemon killed before goes (its ports are plugged again).
                rt.request(_del_link(TAP_INTO), RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, "removing an old tap",
                           tolerate=(errno.ENODEV,))
                ns_fd = netns.open_fd(namespace)
                try:
                    rt.add_veth(TAP_INTO, 0, TAP_OUT, 0, ns_fd)
                    rt.flush()
                finally:
                    os.close(ns_fd)
                for name in (TAP_INTO, TAP_OUT):
                    # No IPv6 of their own: the ends would send router solicitations.
                    netns.write_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
                self.into_index = socket.if_nametoindex(TAP_INTO)
                rt.set_link(socket.if_nametoindex(TAP_OUT), up=True, what=f"the delay line's tap {TAP_OUT}")
                rt.flush()
            # Protocol 0: no frame until bound to the tap (ETH_P_ALL at once would queue
            # the whole node's traffic meanwhile).
            self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.rx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        self.rx.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.rx.bind((TAP_OUT, ETH_P_ALL))
        self.rx.setblocking(False)
        self.tx.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        self.tx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        self.tx.setblocking(False)

    def plug(self, ports: list[tuple[int, str, bytes]]) -> None:
        """In one batch: each port (index, name, the VM's MAC) redirects its frames for
        that MAC to the tap (the sockets are ready: none is lost)."""
        with Rtnl.in_namespace(self.namespace) as rt:
            for index, name, mac in ports:
                _unplug(rt, index, name)
                rt.request(_clsact(index), RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                           f"adding clsact to {name}")
                rt.request(_Encoded(index, mac, self.into_index), RTM_NEWTFILTER,
                           NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, f"redirecting {name} to the delay line")
            rt.flush()

    def unplug(self, ports: list[tuple[int, str]], *, tap_too: bool = False) -> None:
        """In one batch: these ports forward straight to their VMs again (frames held are
        lost, as on a cable pulled); ``tap_too``: the pair goes as well."""
        unplug_ports(self.namespace, ports, tap_too=tap_too)

    def fileno(self) -> int:
        """The socket to wait on for frames."""
        return self.rx.fileno()

    def read(self, at_most: int = 256) -> list[bytes]:
        """The frames waiting (up to ``at_most``), each with its virtio header."""
        frames = []
        for _ in range(at_most):
            try:
                data, addr = self.rx.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ENETDOWN: the tap was taken away, the line is on its way out
                break
            if addr[2] != PACKET_OUTGOING:
                frames.append(data)
        return frames

    def write(self, frame: bytes, port: str) -> bool:
        """Send one frame (virtio header first) on a VM's port; False if the kernel
        refused it (a full queue, the port gone: the frame is lost, as on a wire)."""
        try:
            self.tx.sendto(frame, (port, 0))
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Close the sockets (:meth:`unplug` first, or the ports' frames go nowhere)."""
        self.rx.close()
        self.tx.close()


def destination(frame: bytes) -> bytes:
    """The destination MAC of a frame read from a :class:`Tap`."""
    return frame[VNET_HEADER.size:VNET_HEADER.size + 6]


def corrupt_vnet(frame: bytes, rng, flip) -> bytes | None:
    """A frame read from a :class:`Tap` (virtio header first) with one bit flipped by
    ``flip(ethernet_frame, rng)``. None for a TCP segment still to be cut (GSO): cutting
    it rewrites every header and checksum, which would hide the flip; netem corrupts one
    of its segments, which the VM drops, so the driver drops it whole."""
    gso_type = frame[1]
    if gso_type != VIRTIO_NET_HDR_GSO_NONE:
        return None
    return frame[:VNET_HEADER.size] + flip(frame[VNET_HEADER.size:], rng)
