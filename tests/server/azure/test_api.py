"""Routing and Azure's rules, on invented timelines (no sockets, no clock)."""

from __future__ import annotations

import calendar
import json

import pytest

from netsim_imds.azure.api import (BAD_METHOD, BAD_VERSION, DUPLICATE_QUERY, FORWARDED, LEAF_FORMAT,
                                   MISSING_HEADER, AzureConfig, AzureFlavor)
from netsim_imds.events import Event, EventStore
from netsim_imds.response import Response
from netsim_imds.azure.versions import INSTANCE_VERSIONS

from tests.server.support import VM_ID, azure_event, make_vm, parse_all

T0 = float(calendar.timegm((2015, 9, 15, 6, 42, 51)))  # 9/15/2015 6:42:51 AM, the README's sample
NO_LIMIT = AzureConfig(rate_limit=None)
SE = "/metadata/scheduledevents?api-version=2020-07-01"


def call(api: AzureFlavor, target: str, *, caller="vm1", events=None, now: float = T0, method: str = "GET",
         headers: str = "Metadata: true\r\n", body: bytes = b"") -> tuple[Response, object]:
    """Send one request through the real parser and the API; (response, decoded body)."""
    raw = (f"{method} {target} HTTP/1.1\r\nHost: 169.254.169.254\r\n{headers}"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    (request,) = parse_all(raw)
    who = make_vm(caller) if isinstance(caller, str) else caller
    resp = api.handle(request, who, events if events is not None else EventStore(), now)
    try:
        decoded = json.loads(resp.body) if resp.content_type.startswith("application/json") and resp.body else resp.body
    except ValueError:
        decoded = resp.body
    return resp, decoded


@pytest.fixture
def api() -> AzureFlavor:
    """An API without rate limit (rate tests build their own)."""
    return AzureFlavor(NO_LIMIT)


def reboot(event_id="e1", resources=("vm1", "vm2"), not_before=T0 + 900, **kw) -> Event:
    return azure_event(event_id, kw.pop("event_type", "Reboot"), resources, not_before, kw.pop("created", T0),
                       avset="web", description="Host server is undergoing maintenance.",
                       duration_s=kw.pop("duration_s", -1), **kw)


# -- identity --------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/metadata/v1/InstanceInfo", "/metadata/instance?api-version=2021-02-01",
                                    SE, "/nowhere"])
def test_unattributable_caller_gets_403(api, target) -> None:
    resp, body = call(api, target, caller=None)
    assert resp.status == 403 and "error" in body


# -- 2015 API --------------------------------------------------------------------------

def test_instance_info_needs_no_header_and_has_string_fields(api) -> None:
    resp, body = call(api, "/metadata/v1/InstanceInfo", headers="")
    assert resp.status == 200 and resp.body == b'{"ID":"vm1","UD":"1","FD":"0"}'
    assert call(api, "/metadata/v1/instanceinfo", headers="")[0].status == 200  # case does not matter


def test_maintenance_is_empty_without_events(api) -> None:
    resp, _ = call(api, "/metadata/v1/maintenance", headers="")
    assert (resp.status, resp.body) == (200, b"{}")


def test_maintenance_shows_the_event_only_inside_the_notice_window(api) -> None:
    store = EventStore([reboot(not_before=T0 + 600)])
    assert call(api, "/metadata/v1/maintenance", events=store, now=T0 + 299.9)[0].body == b"{}"
    resp, body = call(api, "/metadata/v1/maintenance", events=store, now=T0 + 300)
    assert body == {"EventID": "e1", "EventCreationTime": "9/15/2015 6:42:51 AM"}
    assert resp.body == b'{"EventID": "e1", "EventCreationTime": "9\\/15\\/2015 6:42:51 AM"}'  # as the README
    assert call(api, "/metadata/v1/maintenance", events=store, now=T0 + 700)[1]["EventID"] == "e1"


def test_maintenance_window_is_configurable_and_started_events_always_show() -> None:
    api = AzureFlavor(AzureConfig(notice_window=30, rate_limit=None))
    store = EventStore([reboot(not_before=T0 + 60)])
    assert call(api, "/metadata/v1/maintenance", events=store, now=T0 + 29)[0].body == b"{}"
    assert call(api, "/metadata/v1/maintenance", events=store, now=T0 + 30)[1]["EventID"] == "e1"
    store.start("e1")
    assert call(api, "/metadata/v1/maintenance", events=store, now=T0)[1]["EventID"] == "e1"


def test_maintenance_reports_only_events_naming_the_vm_and_the_earliest_first(api) -> None:
    store = EventStore([reboot("other", resources=("vm2",), not_before=T0 + 10),
                        reboot("late", resources=("vm1",), not_before=T0 + 200),
                        reboot("soon", resources=("vm1",), not_before=T0 + 100, created=T0 + 12 * 3600 + 5)])
    body = call(api, "/metadata/v1/maintenance", events=store, now=T0)[1]
    assert body == {"EventID": "soon", "EventCreationTime": "9/15/2015 6:42:56 PM"}


def test_seed_api_verbs_and_unknown_paths(api) -> None:
    resp, body = call(api, "/metadata/v1/maintenance", method="POST")
    assert resp.status == 405 and ("Allow", "GET") in resp.headers and body == {"error": BAD_METHOD}
    assert call(api, "/metadata/v1/nothing")[0].status == 404


# -- current API: header, proxy, version, query rules ---------------------------------------

@pytest.mark.parametrize("target", ["/metadata/instance?api-version=2021-02-01", SE, "/metadata/versions"])
@pytest.mark.parametrize("headers", ["", "Metadata: false\r\n", "Metadata: yes\r\n"])
def test_metadata_header_is_required(api, target, headers) -> None:
    resp, body = call(api, target, headers=headers)
    assert resp.status == 400 and body == {"error": MISSING_HEADER}


def test_metadata_header_value_ignores_case(api) -> None:
    assert call(api, "/metadata/versions", headers="metadata: True\r\n")[0].status == 200


def test_x_forwarded_for_is_refused(api) -> None:
    resp, body = call(api, SE, headers="Metadata: true\r\nX-Forwarded-For: 10.0.0.1\r\n")
    assert resp.status == 400 and body == {"error": FORWARDED}


def test_versions_is_unversioned(api) -> None:
    resp, body = call(api, "/metadata/versions")
    assert resp.status == 200 and body == {"apiVersions": list(INSTANCE_VERSIONS)} and len(INSTANCE_VERSIONS) == 35


@pytest.mark.parametrize("query", ["", "?api-version=", "?api-version=latest", "?api-version=2099-01-01",
                                   "?format=json"])
def test_api_version_is_required_and_checked(api, query) -> None:
    resp, body = call(api, "/metadata/instance" + query)
    assert resp.status == 400
    assert body == {"error": BAD_VERSION, "newest-versions": ["2025-04-07", "2024-07-17", "2024-03-15"]}
    assert body["error"].endswith("For more information refer to aka.ms/azureimds")


def test_scheduled_events_versions_are_their_own_list(api) -> None:
    resp, body = call(api, "/metadata/scheduledevents?api-version=2021-02-01")
    assert resp.status == 400 and body["newest-versions"] == ["2020-07-01", "2019-08-01", "2019-04-01"]
    assert call(api, "/metadata/instance?api-version=2020-07-01")[0].status == 400


def test_duplicate_query_names_are_rejected(api) -> None:
    resp, body = call(api, "/metadata/instance?api-version=2021-02-01&api-version=2021-02-01")
    assert resp.status == 400 and body == {"error": DUPLICATE_QUERY}
    assert call(api, SE + "&format=json&format=json")[1] == {"error": DUPLICATE_QUERY}


@pytest.mark.parametrize("target", ["/metadata", "/metadata/", "/metadata/foo", "/metadata/identity/oauth2/nope",
                                    "/metadata/scheduledevents/x?api-version=2020-07-01",
                                    "/metadata/instance/compute/nope?api-version=2021-02-01",
                                    "/metadata/instance/network/interface/1?api-version=2021-02-01",
                                    "/metadata/instance/network/interface/x?api-version=2021-02-01",
                                    "/metadata/instance/compute/vmId/more?api-version=2021-02-01&format=text",
                                    "/latest/meta-data/", "/"])
def test_unknown_paths_are_404(api, target) -> None:
    resp, body = call(api, target)
    assert resp.status == 404 and "error" in body


@pytest.mark.parametrize("method, target, allow", [
    ("POST", "/metadata/instance?api-version=2021-02-01", "GET"),
    ("PUT", "/metadata/instance/compute?api-version=2021-02-01", "GET"),
    ("DELETE", SE, "GET, POST"),
    ("HEAD", "/metadata/versions", "GET"),
])
def test_unsupported_verbs_are_405(api, method, target, allow) -> None:
    resp, body = call(api, target, method=method)
    assert resp.status == 405 and ("Allow", allow) in resp.headers and body == {"error": BAD_METHOD}


# -- instance document ---------------------------------------------------------------------

def _leaves(node):
    """Every primitive inside a JSON document."""
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        return [leaf for child in node for leaf in _leaves(child)]
    return [node]


def test_instance_document(api) -> None:
    resp, body = call(api, "/metadata/instance?api-version=2021-02-01")
    assert resp.status == 200 and set(body) == {"compute", "network"}
    c = body["compute"]
    assert (c["name"], c["vmId"], c["platformUpdateDomain"], c["platformFaultDomain"]) == ("vm1", VM_ID, "1", "0")
    assert c["resourceId"].endswith("/providers/Microsoft.Compute/virtualMachines/vm1")
    assert all(isinstance(v, str) for v in _leaves(c))  # every JSON primitive is a string, nested ones too
    nic = body["network"]["interface"][0]
    assert nic["macAddress"] == "020000000001"
    assert nic["ipv4"] == {"ipAddress": [{"privateIpAddress": "198.18.1.5", "publicIpAddress": ""}],
                           "subnet": [{"address": "198.18.1.0", "prefix": "24"}]}


@pytest.mark.parametrize("version, present, absent", [
    ("2017-04-02", {"vmId", "vmSize", "platformUpdateDomain"}, {"tags", "zone", "resourceId", "userData"}),
    ("2017-08-01", {"tags", "resourceGroupName", "subscriptionId"}, {"zone", "azEnvironment"}),
    ("2019-03-11", {"resourceId", "zone", "azEnvironment"}, {"storageProfile", "tagsList"}),
    ("2021-02-01", {"userData", "tagsList", "storageProfile"}, {"platformSubFaultDomain", "physicalZone"}),
    ("2025-04-07", {"platformSubFaultDomain", "physicalZone"}, set()),
])
def test_compute_fields_follow_the_api_version(api, version, present, absent) -> None:
    compute = call(api, f"/metadata/instance/compute?api-version={version}")[1]
    assert present <= set(compute) and not absent & set(compute)


def test_leaf_needs_format_text(api) -> None:
    base = "/metadata/instance/compute/vmId?api-version=2021-02-01"
    resp, body = call(api, base)
    assert resp.status == 400 and body == {"error": LEAF_FORMAT}
    assert call(api, base + "&format=json")[0].status == 400
    resp, body = call(api, base + "&format=text")
    assert (resp.status, body) == (200, VM_ID.encode()) and resp.content_type.startswith("text/plain")
    assert call(api, "/metadata/instance/compute/platformFaultDomain?api-version=2021-02-01&format=text")[1] == b"0"


def test_bad_format_is_400(api) -> None:
    assert call(api, "/metadata/instance?api-version=2021-02-01&format=xml")[0].status == 400
    assert call(api, SE + "&format=text")[0].status == 400


def test_route_filtering_into_the_network(api) -> None:
    resp, body = call(api, "/metadata/instance/network/interface/0?api-version=2021-02-01")
    assert resp.status == 200 and body["macAddress"] == "020000000001"
    ip = "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress?api-version=2021-02-01&format=text"
    assert call(api, ip)[1] == b"198.18.1.5"
    assert call(api, "/metadata/instance/network/interface/0/?api-version=2021-02-01")[0].status == 200


def test_text_format_of_a_container_lists_its_children(api) -> None:
    assert call(api, "/metadata/instance?api-version=2021-02-01&format=text")[1] == b"compute/\nnetwork/"


def test_fields_newer_than_the_version_are_not_found(api) -> None:
    assert call(api, "/metadata/instance/compute/userData?api-version=2019-06-01&format=text")[0].status == 404
    assert call(api, "/metadata/instance/compute/userData?api-version=2021-01-01&format=text")[0].status == 200


# -- scheduled events -------------------------------------------------------------------------

def test_no_events(api) -> None:
    resp, body = call(api, SE)
    assert resp.status == 200 and body == {"DocumentIncarnation": 1, "Events": []}


def test_event_with_every_2020_07_01_field(api) -> None:
    store = EventStore([reboot(duration_s=5, event_type="Freeze")])
    body = call(api, SE, events=store)[1]
    assert body == {"DocumentIncarnation": 2, "Events": [{
        "EventId": "e1", "EventType": "Freeze", "ResourceType": "VirtualMachine", "Resources": ["vm1", "vm2"],
        "EventStatus": "Scheduled", "NotBefore": "Tue, 15 Sep 2015 06:57:51 GMT",
        "Description": "Host server is undergoing maintenance.", "EventSource": "Platform",
        "DurationInSeconds": 5}]}


@pytest.mark.parametrize("version, fields", [
    ("2017-08-01", set()), ("2019-01-01", set()), ("2019-04-01", {"Description"}),
    ("2019-08-01", {"Description", "EventSource"}), ("2020-07-01", {"Description", "EventSource", "DurationInSeconds"}),
])
def test_event_fields_follow_the_api_version(api, version, fields) -> None:
    (event,) = call(api, f"/metadata/scheduledevents?api-version={version}", events=EventStore([reboot()]))[1]["Events"]
    base = {"EventId", "EventType", "ResourceType", "Resources", "EventStatus", "NotBefore"}
    assert set(event) == base | fields


@pytest.mark.parametrize("version, types", [
    ("2017-08-01", ["Reboot"]), ("2017-11-01", ["Reboot", "Preempt"]),
    ("2019-01-01", ["Reboot", "Preempt", "Terminate"]),
])
def test_event_types_follow_the_api_version(api, version, types) -> None:
    store = EventStore([reboot("a"), reboot("b", event_type="Preempt"), reboot("c", event_type="Terminate")])
    events = call(api, f"/metadata/scheduledevents?api-version={version}", events=store)[1]["Events"]
    assert [e["EventType"] for e in events] == types


def test_preview_version_prefixes_resources_with_an_underscore(api) -> None:
    body = call(api, "/metadata/scheduledevents?api-version=2017-03-01", events=EventStore([reboot()]))[1]
    assert body["Events"][0]["Resources"] == ["_vm1", "_vm2"]


def test_events_are_broadcast_to_the_availability_set(api) -> None:
    store = EventStore([reboot(resources=("vm1",))])
    assert call(api, SE, events=store, caller="vm2")[1]["Events"][0]["Resources"] == ["vm1"]
    other = make_vm("vm9", availability_set="db")
    assert call(api, SE, events=store, caller=other)[1]["Events"] == []
    alone = make_vm("vm1", availability_set="")
    assert len(call(api, SE, events=store, caller=alone)[1]["Events"]) == 1


def test_approval_starts_the_event_for_every_resource(api) -> None:
    approved = []
    store = EventStore([reboot()], on_approve=approved.append)
    body = b'{"StartRequests": [{"EventId": "e1"}]}'
    resp, _ = call(api, SE, events=store, method="POST", body=body)
    assert (resp.status, resp.body) == (200, b"")
    assert [e.event_id for e in approved] == ["e1"]
    for vm in ("vm1", "vm2"):
        doc = call(api, SE, events=store, caller=vm)[1]
        assert doc["DocumentIncarnation"] == 3
        assert (doc["Events"][0]["EventStatus"], doc["Events"][0]["NotBefore"]) == ("Started", "")
    # Approving again (here by a VM of the set that is not a resource) is still a 200, and no new callback.
    assert call(api, SE, events=store, caller="vm3", method="POST", body=body)[0].status == 200
    assert len(approved) == 1


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"StartRequests": []}', b'{"StartRequests": {}}',
                                  b'{"Other": []}', b'{"StartRequests": [{}]}', b'{"StartRequests": [{"EventId": 1}]}',
                                  b'{"StartRequests": ["e1"]}', b"\xff\xfe"])
def test_malformed_start_requests_are_400(api, body) -> None:
    store = EventStore([reboot()])
    assert call(api, SE, events=store, method="POST", body=body)[0].status == 400
    assert store.get("e1").status == "Scheduled"


@pytest.mark.parametrize("body, message", [
    (b"[" * 10_000, "nest at most"),  # used to end in a RecursionError and a 500
    (b"[" * 60_000, "at most 16384 bytes"),
    (b'{"StartRequests": [' + b"[" * 20 + b"]" * 20 + b"]}", "nest at most"),
    (b'{"StartRequests": [' + b", ".join([b'{"EventId": "e1"}'] * 1000) + b"]}", "at most 16384 bytes"),
])
def test_json_bodies_are_bounded_in_depth_and_size(api, body, message) -> None:
    store = EventStore([reboot()])
    resp, doc = call(api, SE, events=store, method="POST", body=body)
    assert resp.status == 400 and message in doc["error"]
    assert store.get("e1").status == "Scheduled"


def test_unknown_or_invisible_event_ids_are_400(api) -> None:
    store = EventStore([reboot()])
    body = b'{"StartRequests": [{"EventId": "e1"}, {"EventId": "nope"}]}'
    assert call(api, SE, events=store, method="POST", body=body)[0].status == 400
    assert store.get("e1").status == "Scheduled"  # nothing approved when one id is bad
    outsider = make_vm("vm9", availability_set="db")
    assert call(api, SE, events=store, caller=outsider, method="POST",
                body=b'{"StartRequests": [{"EventId": "e1"}]}')[0].status == 400


def test_post_needs_the_metadata_header(api) -> None:
    resp, body = call(api, SE, method="POST", headers="", body=b'{"StartRequests": [{"EventId": "e1"}]}')
    assert resp.status == 400 and body == {"error": MISSING_HEADER}


# -- rate limit ------------------------------------------------------------------------------

def test_five_requests_per_second_per_vm() -> None:
    api = AzureFlavor()
    statuses = [call(api, "/metadata/versions", now=T0)[0].status for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    resp, body = call(api, "/metadata/versions", now=T0 + 0.1)
    assert resp.status == 429 and ("Retry-After", "1") in resp.headers and "5 requests per second" in body["error"]
    assert call(api, "/metadata/versions", now=T0 + 0.2)[0].status == 200   # one token back after 0.2 s
    assert call(api, "/metadata/versions", now=T0 + 0.2, caller="vm2")[0].status == 200  # per VM
    # The 2015 API has no documented limit.
    assert {call(api, "/metadata/v1/maintenance", now=T0 + 0.2)[0].status for _ in range(20)} == {200}


def test_rate_limit_is_configurable() -> None:
    api = AzureFlavor(AzureConfig(rate_limit=1))
    assert [call(api, "/metadata/versions", now=T0)[0].status for _ in range(2)] == [200, 429]
    assert call(api, "/metadata/versions", now=T0 + 1)[0].status == 200
