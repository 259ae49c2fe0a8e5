"""The JSON documents the metadata APIs serve, built from a VM and its events (pure).

Shapes and field names are from ``shared/reference/cloud-metadata-apis.md``: section 1
for the 2015 ``/metadata/v1`` API, 2.2 for scheduled events, 2.6 for the instance
document. All JSON primitives of the instance document are strings, as Azure's.
"""

from __future__ import annotations

import base64
import json
import math
import time
from email.utils import formatdate
from typing import Iterable

from netsim_imds.azure import events as azure_events
from netsim_imds.events import Event, Status
from netsim_imds.identity import VmIdentity
from netsim_imds.azure.versions import (COMPUTE_FIELD_SINCE, EVENT_FIELD_SINCE, EVENT_TYPE_SINCE,
                                       NESTED_FIELD_SINCE, UNDERSCORE_RESOURCES_UNTIL)


def rfc1123(ts: float) -> str:
    """``Mon, 19 Sep 2016 18:29:47 GMT``: the NotBefore format of scheduled events."""
    return formatdate(ts, usegmt=True)


def us_datetime(ts: float) -> str:
    """``9/15/2015 6:42:51 AM`` (UTC): the EventCreationTime format of the 2015 API."""
    t = time.gmtime(ts)
    hour = t.tm_hour % 12 or 12
    return f"{t.tm_mon}/{t.tm_mday}/{t.tm_year} {hour}:{t.tm_min:02d}:{t.tm_sec:02d} {'AM' if t.tm_hour < 12 else 'PM'}"


# -- 2015 API ----------------------------------------------------------------------

def instance_info(vm: VmIdentity) -> bytes:
    """``/metadata/v1/InstanceInfo``: ``{"ID":name,"UD":"n","FD":"n"}``, all strings."""
    return json.dumps({"ID": vm.name, "UD": str(vm.update_domain), "FD": str(vm.fault_domain)},
                      separators=(",", ":")).encode()


def pending_maintenance(vm: VmIdentity, events: Iterable[Event], now: float, window: float) -> Event | None:
    """The event ``/metadata/v1/maintenance`` reports: the earliest of this VM's events
    that has started or starts within ``window`` seconds of ``now`` (None if none)."""
    due = [e for e in azure_events.shown(tuple(events)) if vm.name in e.resources
           and (e.status is Status.STARTED or e.not_before <= now + window)]
    return min(due, key=lambda e: e.not_before) if due else None


def maintenance_changes_at(vm: VmIdentity, events: Iterable[Event], now: float, window: float) -> float:
    """When :func:`pending_maintenance` may next answer otherwise with the same events: the
    first time after ``now`` one of this VM's events enters the window (inf: never)."""
    return min((e.not_before - window for e in azure_events.shown(tuple(events)) if vm.name in e.resources
                and e.status is not Status.STARTED and e.not_before - window > now), default=math.inf)


def maintenance(event: Event | None) -> bytes:
    """``/metadata/v1/maintenance`` body: ``{}`` or EventID + EventCreationTime.

    Slashes are written ``\\/`` as in the 2015 README sample (a .NET serializer's habit);
    it is the same JSON string to any parser.
    """
    if event is None:
        return b"{}"
    text = json.dumps({"EventID": event.event_id, "EventCreationTime": us_datetime(event.created)})
    return text.replace("/", "\\/").encode()


# -- scheduled events --------------------------------------------------------------------

def scheduled_events(events: Iterable[Event], incarnation: int, version: str) -> dict:
    """The ``/metadata/scheduledevents`` document for ``api-version=version``.

    Event types and fields newer than ``version`` are left out, and the preview
    version prefixes resource names with an underscore.
    """
    out = []
    underscore = version < UNDERSCORE_RESOURCES_UNTIL
    for e in azure_events.shown(tuple(events)):  # live events of a kind Azure names
        event_type = azure_events.event_type(e)
        if EVENT_TYPE_SINCE[event_type] > version:
            continue
        doc: dict = {
            "EventId": e.event_id,
            "EventType": event_type,
            "ResourceType": "VirtualMachine",
            "Resources": [f"_{r}" if underscore else r for r in e.resources],
            "EventStatus": e.status.value,
            "NotBefore": "" if e.status is Status.STARTED else rfc1123(e.not_before),
        }
        if version >= EVENT_FIELD_SINCE["Description"]:
            doc["Description"] = e.description
        if version >= EVENT_FIELD_SINCE["EventSource"]:
            doc["EventSource"] = azure_events.event_source(e)
        if version >= EVENT_FIELD_SINCE["DurationInSeconds"]:
            doc["DurationInSeconds"] = azure_events.duration_in_seconds(e)
        out.append(doc)
    return {"DocumentIncarnation": incarnation, "Events": out}


# -- instance document ------------------------------------------------------------------

def azure_mac(vm: VmIdentity) -> str:
    """The VM's MAC as Azure prints it: upper-case hex without separators."""
    return vm.mac.replace(":", "").replace("-", "").upper()


def resource_id(vm: VmIdentity) -> str:
    """The VM's Azure resource id."""
    return (f"/subscriptions/{vm.subscription_id}/resourceGroups/{vm.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{vm.name}")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode() if text else ""


def _compute(vm: VmIdentity) -> dict:
    tags = ";".join(f"{k}:{v}" for k, v in vm.tags)
    az = vm.azure
    linux = vm.os_type.lower() == "linux"
    plan_name, plan_product, plan_publisher = az.plan
    return {
        "additionalCapabilities": {"hibernationEnabled": "false"},
        "azEnvironment": vm.az_environment,
        "customData": _b64(az.custom_data),
        "evictionPolicy": az.eviction_policy if az.priority == "Spot" else "",
        "extendedLocation": {"type": "", "name": ""},
        "isHostCompatibilityLayerVm": "false",
        "licenseType": az.license_type,
        "location": vm.location,
        "name": vm.name,
        "offer": vm.offer,
        "osProfile": {"adminUsername": az.admin_username, "computerName": vm.name,
                      "disablePasswordAuthentication": _flag(bool(az.ssh_keys)) if linux else ""},
        "osType": vm.os_type,
        "physicalZone": "",
        "placementGroupId": vm.placement_group_id,
        "plan": {"name": plan_name, "product": plan_product, "publisher": plan_publisher},
        "platformFaultDomain": str(vm.fault_domain),
        "platformSubFaultDomain": "",
        "platformUpdateDomain": str(vm.update_domain),
        "priority": az.priority,
        "provider": vm.provider,
        "publicKeys": [{"keyData": key, "path": f"/home/{az.admin_username}/.ssh/authorized_keys"}
                       for key in az.ssh_keys],
        "publisher": vm.publisher,
        "resourceGroupName": vm.resource_group,
        "resourceId": resource_id(vm),
        "securityProfile": {"secureBootEnabled": _flag(az.secure_boot), "virtualTpmEnabled": _flag(az.virtual_tpm),
                            "encryptionAtHost": "false"},
        "sku": vm.sku,
        "storageProfile": {
            "dataDisks": [],
            "imageReference": {"id": "", "offer": vm.offer, "publisher": vm.publisher,
                               "sku": vm.sku, "version": vm.image_version},
            "osDisk": {"caching": "ReadWrite", "createOption": "FromImage", "diskSizeGB": "30",
                       "managedDisk": {"id": "", "storageAccountType": "Standard_LRS"},
                       "name": f"{vm.name}_OsDisk", "osType": vm.os_type},
            "resourceDisk": {"size": "16384"},
        },
        "subscriptionId": vm.subscription_id,
        "tags": tags,
        "tagsList": [{"name": k, "value": v} for k, v in vm.tags],
        "userData": _b64(vm.user_data),  # Azure serves user data base64-encoded
        "version": vm.image_version,
        "vmId": vm.vm_id,
        "vmScaleSetName": vm.vm_scale_set,
        "vmSize": vm.vm_size,
        "zone": vm.zone,
    }


def _network(vm: VmIdentity) -> dict:
    return {"interface": [{
        "ipv4": {"ipAddress": [{"privateIpAddress": vm.address, "publicIpAddress": ""}],
                 "subnet": [{"address": vm.subnet_address, "prefix": str(vm.prefix) if vm.address else ""}]},
        "ipv6": {"ipAddress": []},
        "macAddress": azure_mac(vm),
    }]}


def instance(vm: VmIdentity, version: str) -> dict:
    """The ``/metadata/instance`` document, compute fields limited to ``version``."""
    compute = {k: v for k, v in _compute(vm).items() if COMPUTE_FIELD_SINCE.get(k, "") <= version}
    for dotted, since in NESTED_FIELD_SINCE.items():  # fields added later inside older objects
        parent, _, leaf = dotted.rpartition(".")
        node = compute
        for key in parent.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and version < since:
            node.pop(leaf, None)
    return {"compute": compute, "network": _network(vm)}


def text_of(node: object) -> str:
    """``format=text`` rendering: a leaf's value, or a container's child names
    (``name/`` for containers, one per line)."""
    if isinstance(node, dict):
        return "\n".join(f"{k}/" if isinstance(v, (dict, list)) else k for k, v in node.items())
    if isinstance(node, list):
        return "\n".join(f"{i}/" if isinstance(v, (dict, list)) else str(i) for i, v in enumerate(node))
    return str(node)
