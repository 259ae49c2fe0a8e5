"""The qdisc messages of link faults, encoded as the kernel reads them (pure: no socket).
The kernel side is tested across real namespaces in tests/runtime/test_faults.py."""

from __future__ import annotations

from pyroute2.netlink.rtnl.tcmsg import tcmsg

from netsim.kernel import qdisc


def decoded(shape: qdisc.Shape) -> tcmsg:
    msg = qdisc._message(1000, shape)
    msg.encode()
    back = tcmsg(msg.data)
    back.decode()
    return back


def test_netem_carries_every_option():
    back = decoded(qdisc.Shape(latency_ms=20, jitter_ms=2, duplicate=1, reorder=5, corrupt=1, rate=125000))
    assert back.get_attr("TCA_KIND") == "netem" and back["index"] == 1000
    opts = back.get_attr("TCA_OPTIONS")
    assert opts["limit"] == qdisc.NETEM_LIMIT and opts["delay"] > 0 and opts["jitter"] > 0 and opts["duplicate"] > 0
    assert opts.get_attr("TCA_NETEM_REORDER")["prob_reorder"] > 0
    assert opts.get_attr("TCA_NETEM_CORRUPT")["prob_corrupt"] > 0
    assert opts.get_attr("TCA_NETEM_RATE")["rate"] == 125000


def test_a_rate_alone_is_tbf():
    back = decoded(qdisc.Shape(rate=50000))
    assert back.get_attr("TCA_KIND") == "tbf"
    assert back.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")["rate"] == 50000


def test_loss_draws():
    assert qdisc._draw(100) == "" and qdisc._draw(25) == "numgen random mod 10000 < 2500 "
