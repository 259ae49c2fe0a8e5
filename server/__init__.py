"""netsim's In-VM Metadata Service: sans-IO HTTP and routing, and a thin asyncio driver.

- :mod:`netsim_imds.http` -- HTTP/1.1 request parser (sans-IO)
- :mod:`netsim_imds.response` -- responses and their one-write serializer (sans-IO)
- :mod:`netsim_imds.api` -- routing of the 2015 ``/metadata/v1`` API and Azure's current API
- :mod:`netsim_imds.documents`, :mod:`netsim_imds.versions` -- the JSON documents, and what each
  api-version adds
- :mod:`netsim_imds.ratelimit` -- the per-VM token bucket
- :mod:`netsim_imds.events` -- scheduled events and the per-node :class:`EventStore`
- :mod:`netsim_imds.identity` -- :class:`VmIdentity`, what a VM is told about itself
- :mod:`netsim_imds.driver` -- :class:`MetadataServer`, serving many node namespaces
- :mod:`netsim_imds.background` -- :class:`ServerThread`, the server on a background loop
- :mod:`netsim.harness.testbed` -- a node + client namespaces, for tests and benchmarks (root)
"""

from netsim_imds.api import ApiConfig, MetadataApi
from netsim_imds.events import Event, EventStore, EventView
from netsim_imds.identity import VmIdentity

__all__ = ["ApiConfig", "Event", "EventStore", "EventView", "MetadataApi", "VmIdentity"]
