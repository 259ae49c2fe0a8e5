"""Azure's flavor of the metadata service, registered as ``"azure"`` (the default).

- :mod:`netsim_imds.azure.api` -- :class:`AzureFlavor`: routing of the 2015 ``/metadata/v1``
  API and Azure's current API, their header, version, error and rate rules
- :mod:`netsim_imds.azure.documents` -- the JSON documents (instance, scheduled events)
- :mod:`netsim_imds.azure.versions` -- the api-versions and what each one adds, as data
- :mod:`netsim_imds.azure.events` -- Azure's words for the event model (types, notices, texts)

Facts: ``shared/reference/cloud-metadata-apis.md`` sections 1 and 2.
"""

from netsim_imds import flavors
from netsim_imds.azure import events  # noqa: F401  (registers Azure's event mapping)
from netsim_imds.azure.api import AzureConfig, AzureFlavor

flavors.register("azure", AzureFlavor)

__all__ = ["AzureConfig", "AzureFlavor"]
