"""GCE's flavor of the metadata service, registered as ``"gcp"`` (``[datacenter] cloud = "gcp"``).

- :mod:`netsim_imds.gcp.api` -- :class:`GcpFlavor`: ``/computeMetadata/v1/`` routing, the
  header, query and redirect rules, long polls (``wait_for_change``) as Waits
- :mod:`netsim_imds.gcp.tree` -- the instance and project trees and their renderings
- :mod:`netsim_imds.gcp.events` -- GCE's words for the event model, the 60-s warning rule

Facts: ``shared/reference/cloud-metadata-apis.md`` section 4,
``instance-metadata-trees.md`` section 3.
"""

from netsim_imds import flavors
from netsim_imds.gcp import events  # noqa: F401  (registers GCE's event mapping)
from netsim_imds.gcp.api import GcpConfig, GcpFlavor

flavors.register("gcp", GcpFlavor)

__all__ = ["GcpConfig", "GcpFlavor"]
