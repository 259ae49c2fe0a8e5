"""The GCE flavor, sans-IO: headers, tree, renderings, query rules, long polls, the warning rule."""

from __future__ import annotations

import json

import pytest

from netsim_imds.events import Event, EventStore, Kind, Status
from netsim_imds.flavors import Wait
from netsim_imds.gcp import GcpFlavor
from netsim_imds.gcp import events as gcp_events
from netsim_imds.request import Headers, Request
from tests.server.support import make_vm

NOW = 1_800_000_000.0
GOOGLE = (("Metadata-Flavor", "Google"),)


def get(target: str, headers=GOOGLE, method: str = "GET") -> Request:
    path, _, qs = target.partition("?")
    query = tuple(tuple(p.split("=", 1)) for p in qs.split("&") if p)
    return Request(method, target, path, query, Headers(tuple(headers)))


@pytest.fixture
def flavor() -> GcpFlavor:
    return GcpFlavor()


def call(flavor, target, view=None, now=NOW, vm=None, **kw):
    return flavor.handle(get(target, **kw), vm or make_vm(), view or EventStore(), now)


def hdr(resp, name):
    return dict(resp.headers)[name]


def test_the_bare_root_answers_without_the_header_and_says_google(flavor) -> None:
    r = call(flavor, "/", headers=())
    assert r.status == 200 and hdr(r, "Metadata-Flavor") == "Google"


def test_without_the_header_403_and_x_forwarded_for_403(flavor) -> None:
    r = call(flavor, "/computeMetadata/v1/instance/name", headers=())
    assert r.status == 403 and b"Missing Metadata-Flavor:Google header" in r.body
    assert hdr(r, "Metadata-Flavor") == "Google" and hdr(r, "ETag")
    r = call(flavor, "/computeMetadata/v1/instance/name", headers=(*GOOGLE, ("X-Forwarded-For", "1.2.3.4")))
    assert r.status == 403
    assert flavor.handle(get("/computeMetadata/v1/instance/name"), None, EventStore(), NOW).status == 403


def test_leaves_listings_and_redirects(flavor) -> None:
    assert call(flavor, "/computeMetadata/v1/instance/name").body == b"vm1"
    zone = call(flavor, "/computeMetadata/v1/instance/zone").body.decode()
    assert zone.startswith("projects/") and zone.endswith("/zones/us-central1-a")
    ident = call(flavor, "/computeMetadata/v1/instance/id").body
    assert ident.isdigit() and ident == call(flavor, "/computeMetadata/v1/instance/id").body
    listing = call(flavor, "/computeMetadata/v1/instance/").body.decode().splitlines()
    assert "network-interfaces/" in listing and "maintenance-event" in listing and "scheduling/" in listing
    r = call(flavor, "/computeMetadata/v1/instance?alt=json")
    assert r.status == 301 and hdr(r, "Location").endswith("/computeMetadata/v1/instance/?alt=json")
    assert call(flavor, "/computeMetadata/v1/instance/nope").status == 404
    assert call(flavor, "/computeMetadata/v1/instance/network-interfaces/0/ip").body == b"198.18.1.5"
    assert call(flavor, "/computeMetadata/v1/instance/network-interfaces/0/gateway").body == b"198.18.1.1"
    assert call(flavor, "/computeMetadata/v1/instance/network-interfaces/0/subnetmask").body == b"255.255.255.0"
    assert call(flavor, "/computeMetadata/v1/instance/scheduling/on-host-maintenance").body == b"MIGRATE"
    assert call(flavor, "/computeMetadata/v1/project/project-id").body == b"netsim"


def test_recursive_json_uses_camel_case_and_numbers(flavor) -> None:
    r = call(flavor, "/computeMetadata/v1/instance/?recursive=true")
    assert r.content_type == "application/json"
    doc = json.loads(r.body)
    assert isinstance(doc["id"], int) and doc["maintenanceEvent"] == "NONE"
    assert doc["networkInterfaces"][0]["mac"] == "02:00:00:00:00:01"
    assert doc["scheduling"] == {"automaticRestart": "TRUE", "onHostMaintenance": "MIGRATE", "preemptible": "FALSE"}
    assert "token" not in doc["serviceAccounts"]["default"]
    assert call(flavor, "/computeMetadata/v1/instance/name?alt=json").body == b'"vm1"'
    assert b"maintenance-event NONE\n" in call(flavor, "/computeMetadata/v1/instance/?recursive=true&alt=text").body


def test_token_and_identity(flavor) -> None:
    r = call(flavor, "/computeMetadata/v1/instance/service-accounts/default/token")
    tok = json.loads(r.body)
    assert r.content_type == "application/json" and tok["token_type"] == "Bearer"
    assert isinstance(tok["expires_in"], int) and 0 < tok["expires_in"] < 3600
    assert call(flavor, "/computeMetadata/v1/instance/service-accounts/default/identity").status == 400
    jwt = call(flavor, "/computeMetadata/v1/instance/service-accounts/default/identity?audience=x&format=full").body
    import base64
    claims = json.loads(base64.urlsafe_b64decode(jwt.split(b".")[1] + b"=="))
    assert claims["aud"] == "x" and claims["google"]["compute_engine"]["instance_name"] == "vm1"


@pytest.mark.parametrize("query", ["foo=1", "timeout_sec=abc", "timeout_sec=0", "timeout_sec=-5",
                                   "alt=xml", "recursive=maybe", "wait_for_change=yes"])
def test_bad_queries_answer_400(flavor, query) -> None:
    assert call(flavor, f"/computeMetadata/v1/instance/name?{query}").status == 400


def test_every_answer_carries_an_etag_that_follows_the_body(flavor) -> None:
    a = call(flavor, "/computeMetadata/v1/instance/name")
    b = call(flavor, "/computeMetadata/v1/instance/name")
    c = call(flavor, "/computeMetadata/v1/instance/hostname")
    assert hdr(a, "ETag") == hdr(b, "ETag") != hdr(c, "ETag") and len(hdr(a, "ETag")) == 16


def migrate(store: EventStore, not_before: float, kind=Kind.PAUSE, event_id="e1") -> Event:
    e = Event(event_id, kind, ("vm1",), not_before, NOW)
    store.add(e)
    return e


def test_a_long_poll_waits_then_wakes_on_a_change(flavor) -> None:
    store = EventStore()
    target = "/computeMetadata/v1/instance/maintenance-event?wait_for_change=true&timeout_sec=30"
    w = call(flavor, target, store)
    assert isinstance(w, Wait) and w.deadline == NOW + 30
    assert isinstance(w.resume(store, NOW + 1), Wait)  # nothing changed: go on waiting
    migrate(store, NOW + 1000)
    again = w.resume(store, NOW + 2)  # the event is 1000 s away: the value is still NONE
    assert isinstance(again, Wait) and again.deadline == NOW + 30
    store.start("e1")
    r = again.resume(store, NOW + 3)
    assert r.body == b"MIGRATE_ON_HOST_MAINTENANCE"
    store.end("e1", NOW + 4)
    assert call(flavor, "/computeMetadata/v1/instance/maintenance-event", store).body == b"NONE"


def test_a_long_poll_returns_the_unchanged_value_at_its_timeout(flavor) -> None:
    w = call(flavor, "/computeMetadata/v1/instance/?wait_for_change=true&timeout_sec=5&recursive=true")
    r = w.resume(EventStore(), NOW + 5)
    assert r.status == 200 and json.loads(r.body)["maintenanceEvent"] == "NONE"


def test_last_etag_that_differs_returns_at_once(flavor) -> None:
    r = call(flavor, "/computeMetadata/v1/instance/maintenance-event?wait_for_change=true&last_etag=0")
    assert r.status == 200 and r.body == b"NONE"
    same = hdr(r, "ETag")
    w = call(flavor, f"/computeMetadata/v1/instance/maintenance-event?wait_for_change=true&last_etag={same}")
    assert isinstance(w, Wait)


def test_the_warning_comes_60_s_ahead_for_a_vm_that_read_the_key(flavor) -> None:
    store = EventStore()
    key = "/computeMetadata/v1/instance/maintenance-event"
    assert call(flavor, key, store).body == b"NONE"  # read: armed
    migrate(store, NOW + 100)
    w = call(flavor, key + "?wait_for_change=true&timeout_sec=3600", store, now=NOW + 1)
    assert isinstance(w, Wait) and w.deadline == NOW + 40  # wakes when the window opens
    r = w.resume(store, NOW + 40)
    assert r.body == b"MIGRATE_ON_HOST_MAINTENANCE"


def test_no_warning_for_a_vm_that_never_read_the_key(flavor) -> None:
    store = EventStore()
    key = "/computeMetadata/v1/instance/maintenance-event"
    migrate(store, NOW + 100)
    assert call(flavor, key, store, now=NOW + 50).body == b"NONE"  # window open, never read before it
    store.start("e1")
    assert call(flavor, key, store, now=NOW + 100).body == b"MIGRATE_ON_HOST_MAINTENANCE"
    store.end("e1", NOW + 101)
    assert call(flavor, key, store, now=NOW + 102).body == b"NONE"  # read after the end: armed again
    migrate(store, NOW + 300, kind=Kind.REBOOT, event_id="e2")
    assert call(flavor, key, store, now=NOW + 250).body == b"TERMINATE_ON_HOST_MAINTENANCE"


def test_upcoming_maintenance_and_preempted(flavor) -> None:
    store = EventStore()
    up = "/computeMetadata/v1/instance/upcoming-maintenance"
    assert json.loads(call(flavor, up, store).body) == {}
    migrate(store, NOW + 1000)
    doc = json.loads(call(flavor, up, store).body)
    assert doc["maintenance_status"] == "PENDING" and doc["type"] == "SCHEDULED" and doc["window_start_time"]
    assert call(flavor, "/computeMetadata/v1/instance/preempted", store).body == b"FALSE"
    migrate(store, NOW + 30, kind=Kind.STOP, event_id="p1")
    assert call(flavor, "/computeMetadata/v1/instance/preempted", store).body == b"TRUE"


def test_the_mapping_speaks_gces_words() -> None:
    assert gcp_events.EVENTS.kind_of("preemption") is Kind.STOP
    assert gcp_events.EVENTS.rule(Kind.PAUSE).impact_s < 1
    assert Status.STARTED  # the model's statuses are what the rule reads


def test_the_vms_user_data_is_its_startup_script(flavor) -> None:
    vm = make_vm(user_data="#!/bin/sh\necho hello")
    assert call(flavor, "/computeMetadata/v1/instance/attributes/", vm=vm).body == b"startup-script\n"
    body = call(flavor, "/computeMetadata/v1/instance/attributes/startup-script", vm=vm).body
    assert body == b"#!/bin/sh\necho hello"
    doc = json.loads(call(flavor, "/computeMetadata/v1/instance/?recursive=true", vm=vm).body)
    assert doc["attributes"] == {"startup-script": "#!/bin/sh\necho hello"}  # user keys stay verbatim


def test_a_token_is_never_handed_out_with_less_than_five_minutes_left() -> None:
    from netsim_imds.gcp.tree import TOKEN_LIFETIME, TOKEN_MIN_REMAINING, access_token
    from netsim_imds.identity import VmIdentity

    vm = VmIdentity(name="vm1", vm_id="11111111-2222-4333-8444-555555555555", node="n1")
    period = TOKEN_LIFETIME - TOKEN_MIN_REMAINING
    seen = {}
    for t in (period * 100 - 0.5, period * 100, period * 100 + 1, period * 100 + period / 2):
        tok = access_token(vm, t)
        assert TOKEN_MIN_REMAINING - 1 <= tok["expires_in"] < TOKEN_LIFETIME, (t, tok)
        seen[t] = tok["access_token"]
    # the same token counts down within a period; the edge of a period brings a new one
    assert seen[period * 100] == seen[period * 100 + 1] != seen[period * 100 - 0.5]
