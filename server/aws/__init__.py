"""AWS's flavor of the metadata service (EC2 IMDS), registered as ``"aws"``.

- :mod:`netsim_imds.aws.api` -- :class:`AwsFlavor`: routing, IMDSv2 (tokens, hop limit,
  ``http_tokens``), AWS's XHTML error pages, per-VM throttling
- :mod:`netsim_imds.aws.tokens` -- IMDSv2 session tokens, bound to a VM, expiring (sans-IO)
- :mod:`netsim_imds.aws.tree` -- the ``meta-data`` tree, dynamic data and user data of a VM
- :mod:`netsim_imds.aws.events` -- AWS's words for the event model and the event documents

Facts: ``shared/reference/cloud-metadata-apis.md`` section 3 and
``shared/reference/instance-metadata-trees.md`` section 2.
"""

from netsim_imds import flavors
from netsim_imds.aws import events  # noqa: F401  (registers AWS's event mapping)
from netsim_imds.aws.api import AwsConfig, AwsFlavor

flavors.register("aws", AwsFlavor)

__all__ = ["AwsConfig", "AwsFlavor"]
