"""Host-side harness: HAProxy in ``lb``, rsyslog in ``ops``, the load generator of ``client``,
process helpers, the pytest plugin, test beds, the flood and layer-2 attack kits."""
