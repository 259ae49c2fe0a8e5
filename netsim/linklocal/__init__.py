"""RFC 3927 IPv4 link-local claiming for the VMs of netsim.

- :mod:`~netsim.linklocal.constants`: the RFC 3927 section 9 constants (``Timers``).
- :mod:`~netsim.linklocal.candidates`: MAC-seeded address choice (section 2.1).
- :mod:`~netsim.linklocal.arp`: ARP packets and their Ethernet frames.
- :mod:`~netsim.linklocal.machine`: the sans-IO ``Claim`` machine (sections 2.2-2.5).
- :mod:`~netsim.linklocal.driver`: one loop that runs every VM's claim over raw
  sockets opened inside the VMs' namespaces.
"""

from netsim.linklocal.arp import ArpPacket, decode_frame, encode_frame
from netsim.linklocal.candidates import Candidates, first_candidate
from netsim.linklocal.constants import RFC_TIMERS, Timers
from netsim.linklocal.errors import IllegalInput, LinkLocalError
from netsim.linklocal.machine import Bind, Claim, ClaimState, Event, SendArp, Unbind

__all__ = ["ArpPacket", "Bind", "Candidates", "Claim", "ClaimState", "Event", "IllegalInput",
           "LinkLocalError", "RFC_TIMERS", "SendArp", "Timers", "Unbind", "decode_frame",
           "encode_frame", "first_candidate"]
