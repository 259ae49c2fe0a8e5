"""The datacenter daemon and what runs inside it: the controller and host agents, the
effects of maintenance on VMs, link-local claims, caller identity and declared services."""
