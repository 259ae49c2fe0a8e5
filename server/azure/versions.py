"""Azure IMDS api-versions and what each one adds, as data.

Every fact here is from ``shared/reference/cloud-metadata-apis.md`` section 2 (the
Azure docs and Swagger it cites). Versions are ISO dates, so string comparison orders
them.
"""

from __future__ import annotations

INSTANCE_VERSIONS: tuple[str, ...] = (
    "2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01",
    "2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01",
    "2019-06-04", "2019-08-01", "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15",
    "2020-09-01", "2020-10-01", "2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01",
    "2021-05-01", "2021-08-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13",
    "2023-07-01", "2023-11-15", "2024-03-15", "2024-07-17", "2025-04-07",
)
"""The 35 api-versions of the instance endpoint (current doc), oldest first."""

SCHEDULED_EVENTS_VERSIONS: tuple[str, ...] = (
    "2017-03-01", "2017-08-01", "2017-11-01", "2019-01-01", "2019-04-01", "2019-08-01", "2020-07-01",
)
"""The api-versions of ``/metadata/scheduledevents``, oldest first."""

NEWEST_VERSIONS: tuple[str, ...] = tuple(reversed(INSTANCE_VERSIONS[-3:]))
"""The ``newest-versions`` list of the invalid-version error (newest first)."""

# -- scheduled events ----------------------------------------------------------------

EVENT_TYPE_SINCE = {"Freeze": "2017-03-01", "Reboot": "2017-03-01", "Redeploy": "2017-03-01",
                    "Preempt": "2017-11-01", "Terminate": "2019-01-01"}
"""First scheduled-events version that shows each EventType; older versions hide it."""

EVENT_FIELD_SINCE = {"Description": "2019-04-01", "EventSource": "2019-08-01",
                     "DurationInSeconds": "2020-07-01"}
"""First scheduled-events version that carries each optional event field."""

UNDERSCORE_RESOURCES_UNTIL = "2017-08-01"
"""Before this version (the preview), IaaS resource names carried a leading underscore."""

# -- instance document ----------------------------------------------------------------

COMPUTE_FIELD_SINCE = {
    "location": "2017-04-02", "name": "2017-04-02", "offer": "2017-04-02", "osType": "2017-04-02",
    "platformFaultDomain": "2017-04-02", "platformUpdateDomain": "2017-04-02",
    "publisher": "2017-04-02", "sku": "2017-04-02", "version": "2017-04-02", "vmId": "2017-04-02",
    "vmSize": "2017-04-02",
    "placementGroupId": "2017-08-01", "resourceGroupName": "2017-08-01",
    "subscriptionId": "2017-08-01", "tags": "2017-08-01",
    "vmScaleSetName": "2017-12-01", "zone": "2017-12-01",
    "azEnvironment": "2018-10-01", "provider": "2018-10-01",
    "resourceId": "2019-03-11",
    "storageProfile": "2019-06-01",
    "tagsList": "2019-06-04",
    "plan": "2018-04-02", "publicKeys": "2018-04-02",
    "customData": "2019-02-01",
    "isHostCompatibilityLayerVm": "2020-06-01", "securityProfile": "2020-06-01",
    "osProfile": "2020-07-15",
    "licenseType": "2020-09-01",
    "priority": "2020-12-01", "evictionPolicy": "2020-12-01",
    "userData": "2021-01-01",
    "extendedLocation": "2021-03-01",
    "additionalCapabilities": "2021-11-01",
    "platformSubFaultDomain": "2021-10-01",
    "physicalZone": "2023-11-15",
}
"""First instance api-version that carries each compute field (fields of 2017-04-02 are
served to 2017-03-01 too: the reference gives no older date)."""

NESTED_FIELD_SINCE = {
    "osProfile.disablePasswordAuthentication": "2020-10-01",
    "storageProfile.resourceDisk": "2021-02-01",
    "securityProfile.encryptionAtHost": "2021-11-01",
}
"""Fields added later inside an object of the compute document (``object.field``: first version)."""

IDENTITY_VERSIONS: tuple[str, ...] = tuple(v for v in INSTANCE_VERSIONS if v >= "2018-02-01")
"""api-versions of ``/metadata/identity`` ("2018-02-01 or greater"): the instance versions from
2018-02-01 on. Attested data and the load balancer take the instance versions from their first."""

ATTESTED_SINCE = "2018-10-01"
"""First api-version of ``/metadata/attested``."""

ATTESTED_FIELD_SINCE = {"nonce": "2018-10-01", "plan": "2018-10-01", "timeStamp": "2018-10-01",
                        "vmId": "2018-10-01", "subscriptionId": "2019-04-30", "sku": "2019-11-01",
                        "licenseType": "2020-09-01"}
"""First api-version whose attested document carries each field."""

LOADBALANCER_SINCE = "2020-10-01"
"""First api-version of ``/metadata/loadbalancer``."""


def newest_of(versions: tuple[str, ...], count: int = 3) -> list[str]:
    """The ``count`` newest of ``versions``, newest first."""
    return list(reversed(versions[-count:]))
