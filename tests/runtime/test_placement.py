"""The one placement of a running datacenter (pure), and the planner fed from it."""

from __future__ import annotations

import random

from netsim.maintenance.planner import Planner
from netsim.model.topology import grid
from netsim.runtime.placement import Placement


def test_placement_is_a_mapping_whose_listeners_hear_every_change() -> None:
    heard = []
    p = Placement({"vm1": "n1", "vm2": "n2"})
    p.listeners.append(lambda vm, old, new: heard.append((vm, old, new)))
    p["vm1"] = "n2"
    p["vm1"] = "n2"  # no change: nothing heard
    del p["vm2"]
    p["vm3"] = "n1"
    assert heard == [("vm1", "n1", "n2"), ("vm2", "n2", None), ("vm3", None, "n1")]
    assert (p.node_of("vm1"), p.node_of("vm2"), p.vms_on("n2"), dict(p)) == (
        "n2", None, ["vm1"], {"vm1": "n2", "vm3": "n1"})


def test_a_fresh_planner_learns_where_vms_are_now_not_where_they_were_built() -> None:
    dc = grid("t", 3, 1)  # vm1 on n1, vm2 on n2, vm3 on n3
    now = 1000.0
    planner = Planner.for_datacenter(dc, random.Random(1), now, placement={"vm1": "n2", "vm2": "n2"})
    assert [planner.node_of(v) for v in ("vm1", "vm2", "vm3")] == ["n2", "n2", None]  # vm3 is gone
    moves = planner.node_failed("n2", ["n1", "n3"], now)
    assert sorted(moves) == ["vm1", "vm2"]  # both healed: the moved vm1 too
    assert Planner.for_datacenter(dc, random.Random(1), now).node_of("vm1") == "n1"  # no placement: the topology
