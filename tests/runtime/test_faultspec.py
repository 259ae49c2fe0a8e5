"""Fault options: kinds, conflicts (one line naming the allowed values), records."""

from __future__ import annotations

import pytest

from netsim.runtime.faultspec import Fault, FaultError, classify, scope


@pytest.mark.parametrize("target,options,kind", [
    ("web1", {"http": 503}, "http"),
    ("web1", {"delay": 100, "jitter": 10, "http": 500}, "http"),
    ("all", {"rate": 100}, "http"),  # --rate alone: the dribble
    ("node:n1", {"loss": 5, "rate": 1000}, "link"),
    ("web1", {"latency": 0, "rate": 1000}, "link"),
    ("web1", {"latency": 20, "jitter": 5, "reorder": 10}, "link"),
    ("node:n2", {"partition": True}, "link"),
])
def test_kinds(target, options, kind):
    assert classify(target, options) == kind


@pytest.mark.parametrize("target,options,says", [
    ("web1", {}, "a fault needs an HTTP option"),
    ("web1", {"http": 500, "loss": 3}, "one fault is of one kind"),
    ("web1", {"http": 500, "reset": True}, "cannot go together"),
    ("web1", {"hang": True, "delay": 5}, "--hang never answers"),
    ("web1", {"jitter": 5}, "--jitter needs --delay (HTTP) or --latency (link)"),
    ("web1", {"loss": 5, "jitter": 5}, "--jitter needs --latency"),
    ("web1", {"reorder": 5, "loss": 1}, "--reorder needs --latency"),
    ("web1", {"partition": True, "loss": 1}, "takes no other option"),
    ("all", {"partition": True}, "not all"),
    ("web1", {"http": 500, "path": "metadata"}, "starting with '/'"),
    ("web1", {"colour": 1}, "no fault option 'colour'"),
])
def test_conflicts_are_one_line(target, options, says):
    with pytest.raises(FaultError) as exc:
        classify(target, options)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_scope_state_and_round_trip():
    assert scope("all") == ("all", None) and scope("node:n1") == ("node", "n1") and scope("web1") == ("vm", "web1")
    f = Fault("fault-3", "node:n1", "http", (("http", 503), ("path", "/metadata/")), 100.0, 130.0)
    assert [f.state(t) for t in (99, 100, 129.9, 130)] == ["pending", "active", "active", "ended"]
    d = f.to_dict(110)
    assert d == {"id": "fault-3", "target": "node:n1", "kind": "http", "http": 503, "path": "/metadata/",
                 "starts_at": 100.0, "ends_at": 130.0, "state": "active"}
    assert Fault.from_dict(d) == f
    h = f.http_fault()
    assert (h.node, h.vm, h.status, h.path, h.ends_at) == ("n1", None, 503, "/metadata/", 130.0)


def test_link_shapes():
    assert Fault("f", "web1", "link", (("loss", 5.0),), 0, None).shape() is None  # loss is an nft rule
    shape = Fault("f", "web1", "link", (("latency", 0.0), ("rate", 1000)), 0, None).shape()
    assert shape.rate == 1000 and not shape.netem and shape.kind_and_options()[0] == "tbf"
    assert Fault("f", "web1", "link", (("latency", 20.0),), 0, None).needs_netem
