"""netsim's In-VM Metadata Service: sans-IO HTTP and routing, and a thin asyncio driver.

- :mod:`server.http` -- HTTP/1.1 request parser (sans-IO)
- :mod:`server.response` -- responses and their one-write serializer (sans-IO)
- :mod:`server.api` -- routing of the 2015 ``/metadata/v1`` API and Azure's current API
- :mod:`server.documents`, :mod:`server.versions` -- the JSON documents, and what each
  api-version adds
- :mod:`server.ratelimit` -- the per-VM token bucket
- :mod:`server.events` -- scheduled events and the per-node :class:`EventStore`
- :mod:`server.identity` -- :class:`VmIdentity`, what a VM is told about itself
- :mod:`server.driver` -- :class:`MetadataServer`, serving many node namespaces
- :mod:`server.background` -- :class:`ServerThread`, the server on a background loop
- :mod:`server.testbed` -- a node + client namespaces, for tests and benchmarks (root)
"""

from server.api import ApiConfig, MetadataApi
from server.events import Event, EventStore, EventView
from server.identity import VmIdentity

__all__ = ["ApiConfig", "Event", "EventStore", "EventView", "MetadataApi", "VmIdentity"]
