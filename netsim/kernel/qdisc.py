"""Link faults in the kernel: qdiscs through rtnetlink, packet loss and partitions through nftables.

A VM's link fault shapes its port (the node-side end of its veth,
:func:`netsim.model.names.vm_port`): everything sent *to* the VM, its metadata answers
included, is delayed, duplicated, reordered, corrupted or paced there (one direction: a
ping's round trip sees the latency once). The root qdisc of the port is netem when the
fault needs it (latency, jitter, duplicate, reorder, corrupt) and tbf when it only paces
(rate); messages are pyroute2's ``tcmsg`` (``pyroute2.netlink.rtnl.tcmsg.sched_netem`` /
``sched_tbf``) sent on the batched socket of :mod:`netsim.kernel.rtnl` (no ``tc``
process): a thousand ports of one node are one write. A kernel built without netem
(``CONFIG_NET_SCH_NETEM``) gets netsim's delay line instead (:mod:`netsim.kernel.delayline`,
:mod:`netsim.runtime.delaylines`): :func:`require_delay_line` says in one line when it cannot.

Loss and partitions are rules of one nftables table per node (:func:`node_rules`, loaded
through :mod:`netsim.kernel.nft`), which works on every kernel netsim runs on: a random
drop (``numgen random``) of what leaves a lossy port, a drop of what a cut VM's port sends
to the metadata address, and for a node cut from the fabric a drop of everything through
its uplink. Everything lives inside netsim's namespaces, so ``down`` and ``cleanup``
(which delete them) remove every qdisc and rule; deleting or moving a veth drops its qdisc.
"""

from __future__ import annotations

import errno
import gzip
import os
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELQDISC, RTM_NEWQDISC, TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import sched_netem, sched_tbf, tcmsg

from netsim.errors import NetsimError
from netsim.kernel import nft
from netsim.kernel.rtnl import Rtnl

ROOT_HANDLE = 0x10000  # 1:0
NETEM_LIMIT = 10000
"""Packets netem may hold (its default, 1000, drops a burst behind a long delay)."""


class NoNetem(NetsimError):
    """The kernel has no netem qdisc: latency, jitter, duplicate, reorder and corrupt
    faults cannot be made (loss, rate and partitions can)."""


@dataclass(frozen=True)
class Shape:
    """The qdisc a link fault puts on a port: ``latency_ms`` +- ``jitter_ms``,
    ``duplicate``, ``reorder`` and ``corrupt`` percentages (netem), ``rate`` bytes/s (netem
    with the others, else tbf). Reordering needs a latency (netem sends the reordered
    packets at once and delays the rest)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    rate: int | None = None

    @property
    def netem(self) -> bool:
        """Whether it takes netem (anything but a plain rate)."""
        return bool(self.latency_ms or self.jitter_ms or self.duplicate or self.reorder or self.corrupt)

    def kind_and_options(self) -> tuple[str, dict]:
        """The qdisc kind and its options as pyroute2 encodes them."""
        if self.netem:
            kw: dict = {"delay": int(self.latency_ms * 1000), "jitter": int(self.jitter_ms * 1000),
                        "duplicate": self.duplicate, "limit": NETEM_LIMIT}
            if self.reorder:
                kw["prob_reorder"] = self.reorder
            if self.corrupt:
                kw["prob_corrupt"] = self.corrupt
            if self.rate:
                kw["rate"] = self.rate
            return "netem", sched_netem.get_parameters(kw)
        assert self.rate
        # A burst of a tenth of a second (at least two full frames) and a queue of one
        # second: paced, not policed.
        burst = max(2 * 1514, self.rate // 10)
        return "tbf", sched_tbf.get_parameters({"rate": self.rate, "burst": burst, "limit": self.rate + burst})


def _message(index: int, shape: Shape | None) -> tcmsg:
    msg = tcmsg()
    msg["index"], msg["parent"] = index, TC_H_ROOT
    if shape is not None:
        kind, options = shape.kind_and_options()
        msg["handle"] = ROOT_HANDLE
        msg["attrs"] = [("TCA_KIND", kind), ("TCA_OPTIONS", options)]
    return msg


def set_ports(namespace: str, ports: dict[int, tuple[str, Shape | None]]) -> None:
    """In one batch inside ``namespace``: for each link index, its qdisc (None: the
    kernel's default again), with the name used in errors. A port gone is fine."""
    with Rtnl.in_namespace(namespace) as sock:
        for index, (what, shape) in ports.items():
            if shape is None:
                sock.request(_message(index, None), RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, f"unshaping {what}",
                             tolerate=(errno.ENOENT, errno.EINVAL, errno.ENODEV))
            else:
                sock.request(_message(index, shape), RTM_NEWQDISC,
                             NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, f"shaping {what}",
                             tolerate=(errno.ENODEV,))
        sock.flush()


NO_NETEM = ("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set): latency, jitter, duplicate, "
            "reorder and corrupt faults are unavailable here; loss, rate and partition work")


def netem_available() -> bool:
    """Whether the kernel can make a netem qdisc: built in or a module (its build
    configuration says so when it is published; if not, assume it can)."""
    if os.path.isdir("/sys/module/sch_netem"):
        return True
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            config = f.read()
    except OSError:
        return True
    return "CONFIG_NET_SCH_NETEM=y" in config or "CONFIG_NET_SCH_NETEM=m" in config


def require_netem() -> None:
    """Raise :class:`NoNetem` (one line) unless :func:`netem_available`."""
    if not netem_available():
        raise NoNetem(NO_NETEM)


DELAY_LINE_CONFIG = ("CONFIG_NET_SCH_INGRESS", "CONFIG_NET_CLS_U32", "CONFIG_NET_ACT_MIRRED")
"""What :mod:`netsim.kernel.delayline` needs of the kernel: clsact, u32 and mirred."""


def require_delay_line() -> None:
    """Raise :class:`NoNetem` (one line) unless the kernel can redirect a port's frames
    to netsim's delay line (its build configuration says so when it is published; if not,
    assume it can)."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            config = f.read()
    except OSError:
        return
    missing = [c for c in DELAY_LINE_CONFIG if f"{c}=y" not in config and f"{c}=m" not in config]
    if missing:
        raise NoNetem(f"this kernel has neither netem (CONFIG_NET_SCH_NETEM) nor {', '.join(missing)} for netsim's "
                      "delay line: latency, jitter, duplicate, reorder and corrupt faults are unavailable here; "
                      "loss, rate and partition work")


# -- loss and partitions: nftables -------------------------------------------------------

BRIDGE_TABLE = "netsim_faults"
"""The bridge table of a node's lossy ports and of its VM ports cut from the metadata service."""

UPLINK_TABLE = "netsim_partition"
"""The inet table of a node cut from the fabric."""

LOSS_SCALE = 10000
"""Loss is drawn per packet out of this many (a hundredth of a percent)."""


def node_rules(namespace: str, *, loss: dict[str, float], cut_ports: list[str], metadata_address: str,
               uplink: str | None) -> None:
    """Make the fault rules of one node exactly these (replacing the previous ones):
    ``loss`` maps a port to the percentage of frames it drops on their way out (to the
    VM), ``cut_ports`` are VM ports whose IPv4 to ``metadata_address`` is dropped (a
    VM's port name may be given to every node: it matches only where the port is),
    ``uplink`` is the interface of a node cut from the fabric (None: not cut)."""
    if not loss and not cut_ports and uplink is None:
        # Nothing to hold (the usual case, e.g. a daemon starting): remove the tables only
        # if they exist, since a removal waits for the kernel's RCU grace period (~10 ms).
        tables = nft.run(namespace, "list tables")
        if f"bridge {BRIDGE_TABLE}" not in tables and f"inet {UPLINK_TABLE}" not in tables:
            return
    text = _reset("bridge", BRIDGE_TABLE) + _reset("inet", UPLINK_TABLE)
    if loss or cut_ports:
        cut = ", ".join(f'"{p}"' for p in sorted(cut_ports))
        lossy = "\n".join(f'        oifname "{port}" {_draw(pct)}counter drop comment "fault: loss {pct:g} %"'
                          for port, pct in sorted(loss.items()))
        text += f"""
table bridge {BRIDGE_TABLE} {{
    set cut {{ type ifname; {f"elements = {{ {cut} }}" if cut else ""} }}
    chain prerouting {{
        type filter hook prerouting priority filter; policy accept;
        iifname @cut ip daddr {metadata_address} counter drop comment "fault: cut from the metadata service"
    }}
    chain postrouting {{
        type filter hook postrouting priority filter; policy accept;
{lossy}
    }}
}}
"""
    if uplink is not None:
        text += f"""
table inet {UPLINK_TABLE} {{
    chain input {{ type filter hook input priority -10; policy accept; iifname "{uplink}" drop; }}
    chain forward {{ type filter hook forward priority -10; policy accept; iifname "{uplink}" drop; }}
    chain fwd_out {{ type filter hook forward priority -9; policy accept; oifname "{uplink}" drop; }}
    chain output {{ type filter hook output priority -10; policy accept; oifname "{uplink}" drop; }}
}}
"""
    nft.run(namespace, text)


def _draw(pct: float) -> str:
    """The match of a random ``pct`` % of packets ("" : every packet)."""
    share = round(pct * LOSS_SCALE / 100)
    return "" if share >= LOSS_SCALE else f"numgen random mod {LOSS_SCALE} < {share} "


def _reset(family: str, table: str) -> str:
    # Declare then delete: the table is gone afterwards whether it existed or not, so
    # loading it again is idempotent (no rule twice).
    return f"table {family} {table} {{ }}\ndelete table {family} {table}\n"
