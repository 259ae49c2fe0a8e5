"""Topology: the frozen model of a datacenter, its loader and its address plan."""

from netsim.topology.load import load, parse
from netsim.topology.model import VM, AvailabilitySet, Datacenter, Node, grid

__all__ = ["VM", "AvailabilitySet", "Datacenter", "Node", "grid", "load", "parse"]
