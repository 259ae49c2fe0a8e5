"""Kernel plumbing: namespaces, netlink (rtnetlink, bridge FDB), nftables, the builder that
realises a topology, teardown, host settings, and the guard that keeps traffic out of the
host's own namespace."""
