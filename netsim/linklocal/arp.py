"""ARP packets as values, and their Ethernet frames, built and parsed with scapy's layers.

Only ``scapy.layers.l2`` is imported: ``scapy.all`` costs a second at import and reads
the importing thread's routes and interfaces, which mean nothing inside a namespace.

Every frame this module builds goes to link-layer broadcast: RFC 3927 section 2.5 says
"all ARP packets (*replies* as well as requests) that contain a Link-Local 'sender IP
address' MUST be sent using link-layer broadcast", and probes go there anyway.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from scapy.layers.l2 import ARP, Ether

REQUEST = 1
"""ARP opcode of a request (probes and announcements are requests)."""
REPLY = 2
"""ARP opcode of a reply."""
BROADCAST = "ff:ff:ff:ff:ff:ff"
"""Link-layer broadcast address."""
ZERO_MAC = "00:00:00:00:00:00"
"""The THA of probes and announcements (RFC 3927 section 2.2.1: "SHOULD be set to all zeroes")."""
UNSPECIFIED = "0.0.0.0"
"""The SPA of a probe."""
ETH_P_ARP = 0x0806
"""Ethertype of ARP."""
_HEADER_LEN = 14 + 28  # Ethernet + ARP for Ethernet/IPv4


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """One Ethernet/IPv4 ARP packet: opcode, sender/target hardware and protocol addresses.

    ``src`` is the Ethernet source of the frame that carried it (equal to ``sha`` for
    every packet :func:`decode_frame` returns). MACs are lowercase ``aa:bb:...``.
    """

    op: int
    sha: str
    spa: str
    tha: str
    tpa: str
    src: str

    @classmethod
    def probe(cls, mac: str, address: str) -> "ArpPacket":
        """An ARP probe for ``address`` (RFC 3927 section 2.2.1: SPA 0.0.0.0, TPA the candidate)."""
        return cls(REQUEST, mac, UNSPECIFIED, ZERO_MAC, address, mac)

    @classmethod
    def announcement(cls, mac: str, address: str) -> "ArpPacket":
        """An ARP announcement of ``address`` (RFC 3927 section 2.4: SPA = TPA = the address)."""
        return cls(REQUEST, mac, address, ZERO_MAC, address, mac)

    @classmethod
    def reply(cls, mac: str, address: str, to: "ArpPacket") -> "ArpPacket":
        """A reply saying ``address`` is at ``mac``, answering ``to`` (sent to broadcast)."""
        return cls(REPLY, mac, address, to.sha, to.spa, mac)

    @property
    def is_probe(self) -> bool:
        """True for an ARP probe: a request with sender IP 0.0.0.0."""
        return self.op == REQUEST and self.spa == UNSPECIFIED

    @property
    def is_announcement(self) -> bool:
        """True for an ARP announcement: a request whose sender and target IP are equal."""
        return self.op == REQUEST and self.spa == self.tpa and self.spa != UNSPECIFIED


@functools.lru_cache(maxsize=4096)
def encode_frame(pkt: ArpPacket) -> bytes:
    """The Ethernet frame (dst ff:ff:ff:ff:ff:ff, 42 bytes) carrying ``pkt``.

    Cached: a machine sends the same probe PROBE_NUM times, and building with scapy
    costs a few hundred microseconds.
    """
    frame = Ether(dst=BROADCAST, src=pkt.src, type=ETH_P_ARP) / ARP(
        hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=pkt.op,
        hwsrc=pkt.sha, psrc=pkt.spa, hwdst=pkt.tha, pdst=pkt.tpa)
    return bytes(frame)


def decode_frame(data: bytes | bytearray | memoryview) -> ArpPacket | None:
    """Parse an Ethernet frame; return the ARP packet in it, or None.

    None means "not for us": too short (truncated), not ARP, not Ethernet/IPv4 ARP, or
    an ARP sender MAC that differs from the frame's source (RFC 5227 section 1.1 asks
    receivers to drop those). Trailing bytes (padding to 60 bytes) are ignored.
    """
    return _decode(bytes(data))


@functools.lru_cache(maxsize=4096)
def _decode(data: bytes) -> ArpPacket | None:
    # Cached by content: a broadcast reaches every VM socket of a bridge, so the same
    # bytes arrive once per VM and are parsed once.
    if len(data) < _HEADER_LEN or data[12:14] != b"\x08\x06":
        return None
    try:
        frame = Ether(data)
    except Exception:  # scapy raises assorted errors on garbage; garbage is "not ARP"
        return None
    arp = frame.getlayer(ARP)
    if arp is None or (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) != (1, 0x0800, 6, 4):
        return None
    src = frame.src.lower()
    sha = arp.hwsrc.lower()
    if sha != src:
        return None
    return ArpPacket(int(arp.op), sha, arp.psrc, arp.hwdst.lower(), arp.pdst, src)
