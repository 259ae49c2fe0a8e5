"""netsim's In-VM Metadata Service: a sans-IO HTTP core, a thin asyncio driver, and one
folder per cloud flavor. It imports nothing from ``netsim`` (netsim uses it, never the
reverse): the driver is handed a socket factory, and :class:`NetsimError` is rooted here.

The core knows no cloud's path:

- :mod:`netsim_imds.http` -- HTTP/1.1 request parser (sans-IO); :mod:`netsim_imds.request`
  its request values, :mod:`netsim_imds.parserstate` its state table
- :mod:`netsim_imds.response` -- responses and their one-write serializer (sans-IO)
- :mod:`netsim_imds.flavors` -- the :class:`~netsim_imds.flavors.Flavor` protocol, the
  :class:`~netsim_imds.flavors.Wait` of a parked request, the registry of flavors by name
- :mod:`netsim_imds.ratelimit` -- the per-VM token bucket
- :mod:`netsim_imds.events` -- events and the per-node :class:`EventView`
- :mod:`netsim_imds.identity` -- :class:`VmIdentity`, who is asking
- :mod:`netsim_imds.fairness` -- each caller's bounded share (sans-IO)
- :mod:`netsim_imds.driver`, :mod:`netsim_imds.connection` -- :class:`MetadataServer`,
  serving many node namespaces from one loop
- :mod:`netsim_imds.background` -- :class:`ServerThread`, the server on a background loop
- :mod:`netsim_imds.address` -- the metadata address
- :mod:`netsim_imds.errors` -- the root of the one error hierarchy

Flavors: :mod:`netsim_imds.azure` (``"azure"``, the default), :mod:`netsim_imds.aws`
(``"aws"``). A test bed (node and client namespaces) is :mod:`netsim.harness.testbed`.
"""

from netsim_imds.address import METADATA_ADDRESS, METADATA_PORT
from netsim_imds.errors import NetsimError
from netsim_imds.events import Event, EventStore, EventView
from netsim_imds.flavors import Flavor, Wait
from netsim_imds.identity import VmIdentity

__all__ = ["METADATA_ADDRESS", "METADATA_PORT",
           "Event", "EventStore", "EventView", "Flavor", "NetsimError", "VmIdentity", "Wait"]
