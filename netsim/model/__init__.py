"""Topology: the frozen model of a datacenter, its loader and its address plan."""

from netsim.model.load import load, parse
from netsim.model.topology import VM, AvailabilitySet, Datacenter, Node, grid

__all__ = ["VM", "AvailabilitySet", "Datacenter", "Node", "grid", "load", "parse"]
