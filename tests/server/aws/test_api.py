"""The AWS flavor's routing, IMDSv2 rules, tree and event documents, on invented timelines
(no sockets, no clock)."""

from __future__ import annotations

import calendar
import json
import socket

import pytest

from netsim_imds.aws import events as aws_events
from netsim_imds.aws.api import AwsConfig, AwsFlavor
from netsim_imds.aws.tokens import RECENT, TokenIssuer
from netsim_imds.aws.tree import instance_id
from netsim_imds.events import Event, EventStore, Kind, Status
from netsim_imds.response import Response

from tests.server.support import make_vm, parse_all

T0 = float(calendar.timegm((2019, 1, 21, 9, 0, 43)))


def call(api: AwsFlavor, target: str, *, caller="vm1", events=None, now: float = T0, method: str = "GET",
         headers: str = "", **vm) -> Response:
    """One request through the real parser and the flavor."""
    raw = f"{method} {target} HTTP/1.1\r\nHost: 169.254.169.254\r\n{headers}Content-Length: 0\r\n\r\n".encode()
    (request,) = parse_all(raw)
    who = make_vm(caller, location="us-east-1", vm_size="m5.large", **vm) if isinstance(caller, str) else caller
    return api.handle(request, who, events if events is not None else EventStore(), now)


def token(api: AwsFlavor, ttl: int = 21600, now: float = T0, **vm) -> str:
    resp = call(api, "/latest/api/token", method="PUT", headers=f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}\r\n",
                now=now, **vm)
    assert resp.status == 200
    return resp.body.decode()


@pytest.fixture
def api() -> AwsFlavor:
    return AwsFlavor(AwsConfig(rate_limit=None), secret=b"k" * 32)


def test_the_token_put_echoes_the_ttl_and_is_sent_with_ip_ttl_equal_to_the_hop_limit(api) -> None:
    resp = call(api, "/latest/api/token", method="PUT", headers="X-aws-ec2-metadata-token-ttl-seconds: 60\r\n",
                hop_limit=2)
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert ("X-aws-ec2-metadata-token-ttl-seconds", "60") in resp.headers
    assert resp.socket_options == ((socket.IPPROTO_IP, socket.IP_TTL, 2),)
    # a GET reply carries no option: only the token reply is limited
    assert call(api, "/latest/meta-data/instance-id").socket_options == ()


@pytest.mark.parametrize("ttl", ["0", "21601", "-1", "abc", "1.5", ""])
def test_a_token_ttl_out_of_range_or_missing_is_400(api, ttl) -> None:
    header = f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}\r\n" if ttl else ""
    resp = call(api, "/latest/api/token", method="PUT", headers=header)
    assert resp.status == 400 and b"<title>400 - Bad Request</title>" in resp.body


def test_put_on_a_versioned_or_slashed_token_path_is_403_and_x_forwarded_for_is_refused(api) -> None:
    h = "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n"
    assert call(api, "/2021-03-23/api/token", method="PUT", headers=h).status == 403
    assert call(api, "/latest/api/token/", method="PUT", headers=h).status == 403
    assert call(api, "/latest/api/token", method="PUT", headers=h + "X-Forwarded-For: 198.18.0.9\r\n").status == 403


def test_tokens_are_bound_to_the_vm_and_expire(api) -> None:
    t = token(api, ttl=10)
    h = f"X-aws-ec2-metadata-token: {t}\r\n"
    assert call(api, "/latest/meta-data/instance-id", headers=h).status == 200
    assert call(api, "/latest/meta-data/instance-id", headers=h, now=T0 + 10).status == 401
    other = make_vm("vm2", vm_id="0b2c5d1e-0000-4000-8000-000000000002")
    assert call(api, "/latest/meta-data/instance-id", headers=h, caller=other).status == 401
    assert call(api, "/latest/meta-data/instance-id", headers="X-aws-ec2-metadata-token: AAAA\r\n").status == 401
    # another node's server (another secret) refuses it
    assert call(AwsFlavor(AwsConfig(rate_limit=None)), "/latest/meta-data/", headers=h).status == 401


def test_required_tokens_refuse_imdsv1_and_optional_allow_it(api) -> None:
    assert call(api, "/latest/meta-data/", http_tokens="required").status == 401
    assert call(api, "/latest/meta-data/").status == 200
    t = token(api, http_tokens="required")
    assert call(api, "/latest/meta-data/", headers=f"X-aws-ec2-metadata-token: {t}\r\n",
                http_tokens="required").status == 200


def test_listings_leaves_and_absent_items(api) -> None:
    vm = make_vm("vm1", location="us-east-1", vm_size="m5.large")
    top = call(api, "/latest/meta-data/", caller=vm).body.decode().split("\n")
    assert {"ami-id", "instance-id", "instance-type", "local-ipv4", "local-hostname", "mac", "hostname",
            "placement/", "network/", "events/", "autoscaling/"} <= set(top)
    assert "iam/" not in top and "spot/" not in top  # no role, no interruption
    assert call(api, "/latest/meta-data/instance-id", caller=vm).body.decode() == instance_id(vm)
    assert instance_id(vm).startswith("i-") and len(instance_id(vm)) == 19
    # botocore asks with a slash after a leaf
    assert call(api, "/latest/meta-data/placement/availability-zone/", caller=vm).body == b"us-east-1a"
    assert call(api, "/latest/meta-data/placement/region", caller=vm).body == b"us-east-1"
    assert call(api, "/latest/meta-data/local-hostname", caller=vm).body == b"ip-198-18-1-5.ec2.internal"
    macs = call(api, "/latest/meta-data/network/interfaces/macs/", caller=vm).body
    assert macs == b"02:00:00:00:00:01/"
    assert call(api, "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:01/local-ipv4s",
                caller=vm).body == b"198.18.1.5"
    missing = call(api, "/latest/meta-data/nothing-here", caller=vm)
    assert missing.status == 404 and b"<title>404 - Not Found</title>" in missing.body
    assert ("Server", "EC2ws") in missing.headers
    assert call(api, "/latest/meta-data/instance-id/x", caller=vm).status == 404
    assert call(api, "/latest/user-data", caller=vm).status == 404


def test_versioned_roots_and_the_root_listing(api) -> None:
    root = call(api, "/").body.decode().split("\n")
    assert root[0] == "1.0" and root[-1] == "latest" and "2021-03-23" in root
    assert call(api, "/2021-03-23/meta-data/instance-id").status == 200
    assert "events/" not in call(api, "/2016-09-02/meta-data/").body.decode().split("\n")
    assert call(api, "/1999-01-01/meta-data/").status == 404
    assert call(api, "/latest").body == b"dynamic\nmeta-data"
    assert call(api, "/latest", user_data="#!/bin/sh\n").body == b"dynamic\nmeta-data\nuser-data"
    assert call(api, "/latest/user-data", user_data="1234,john\n").body == b"1234,john\n"


def test_role_credentials_rotate_and_expire_in_aws_shape(api) -> None:
    assert call(api, "/latest/meta-data/iam/security-credentials/", iam_role="app").body == b"app"
    first = json.loads(call(api, "/latest/meta-data/iam/security-credentials/app", iam_role="app").body)
    assert set(first) == {"Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert first["Code"] == "Success" and first["AccessKeyId"].startswith("ASIA")
    expiry = calendar.timegm(__import__("time").strptime(first["Expiration"], "%Y-%m-%dT%H:%M:%SZ"))
    assert expiry > T0 + 300
    later = json.loads(call(api, "/latest/meta-data/iam/security-credentials/app", iam_role="app",
                            now=T0 + 3600).body)
    assert later["AccessKeyId"] != first["AccessKeyId"]
    info = json.loads(call(api, "/latest/meta-data/iam/info", iam_role="app").body)
    assert info["InstanceProfileArn"].endswith(":instance-profile/app")
    doc = json.loads(call(api, "/latest/dynamic/instance-identity/document").body)
    assert doc["region"] == "us-east-1" and doc["instanceId"].startswith("i-")


def test_scheduled_events_history_spot_and_rebalance_in_aws_shapes(api) -> None:
    store = EventStore([Event("e1", Kind.REBOOT, ("vm1",), T0 + 3600, T0, description="scheduled reboot",
                              not_after=T0 + 4000)])
    resp = call(api, "/latest/meta-data/events/maintenance/scheduled", events=store)
    assert resp.content_type == "text/plain"
    (e,) = json.loads(resp.body)
    assert e["Code"] == "system-reboot" and e["State"] == "active"
    assert e["NotBefore"] == "21 Jan 2019 10:00:43 GMT"
    assert e["EventId"].startswith("instance-event-") and len(e["EventId"]) == len("instance-event-") + 17
    assert call(api, "/latest/meta-data/spot/instance-action", events=store).status == 404
    store.end("e1", T0 + 4000, Status.CANCELED)
    (h,) = json.loads(call(api, "/latest/meta-data/events/maintenance/history", events=store).body)
    assert h["State"] == "canceled" and h["Description"] == "[Canceled] scheduled reboot"
    assert json.loads(call(api, "/latest/meta-data/events/maintenance/scheduled", events=store).body) == []
    store.add(Event("s1", Kind.PREEMPT, ("vm1",), T0 + 120, T0))
    action = json.loads(call(api, "/latest/meta-data/spot/instance-action", events=store).body)
    assert action == {"action": "terminate", "time": "2019-01-21T09:02:43Z"}
    assert call(api, "/latest/meta-data/spot/termination-time", events=store).body == b"2019-01-21T09:02:43Z"
    assert call(api, "/latest/meta-data/autoscaling/target-lifecycle-state", events=store).body == b"InService"
    assert call(api, "/latest/meta-data/events/recommendations/rebalance", events=store).status == 404
    store.add(Event("r1", Kind.NOTICE, ("vm1",), T0, T0))
    assert json.loads(call(api, "/latest/meta-data/events/recommendations/rebalance", events=store).body) == {
        "noticeTime": "2019-01-21T09:00:43Z"}


def test_throttling_is_per_vm_and_other_verbs_are_405() -> None:
    api = AwsFlavor(AwsConfig(rate_limit=2, rate_burst=2))
    assert [call(api, "/latest/meta-data/").status for _ in range(3)] == [200, 200, 429]
    assert call(api, "/latest/meta-data/", caller=make_vm("vm2")).status == 200
    assert call(AwsFlavor(AwsConfig(rate_limit=None)), "/latest/meta-data/", method="POST").status == 405
    assert call(AwsFlavor(AwsConfig(rate_limit=None)), "/latest/meta-data/", caller=None).status == 403


def test_the_event_names_are_aws_codes() -> None:
    names = aws_events.EVENTS
    assert names.kind_of("spot-interruption") is Kind.PREEMPT
    assert names.kind_of("instance-reboot") is names.kind_of("system-reboot") is Kind.REBOOT
    assert names.kind_of("instance-stop") is names.kind_of("spot-interruption:stop") is Kind.STOP
    assert names.kind_of("asg-termination") is Kind.TERMINATE
    assert aws_events.event_time(T0) == "21 Jan 2019 09:00:43 GMT"
    with pytest.raises(Exception, match="not one of"):
        names.kind_of("system-explode")


def test_codes_are_shown_their_way(api) -> None:
    store = EventStore([
        Event("a", Kind.REBOOT, ("vm1",), T0 + 60, T0, code="instance-reboot"),
        Event("b", Kind.STOP, ("vm1",), T0 + 60, T0),
        Event("c", Kind.STOP, ("vm1",), T0 + 120, T0, code="spot-interruption:hibernate"),
    ])
    codes = [e["Code"] for e in json.loads(call(api, "/latest/meta-data/events/maintenance/scheduled",
                                                events=store).body)]
    assert codes == ["instance-reboot", "instance-stop"]  # the spot stop is no scheduled event
    action = json.loads(call(api, "/latest/meta-data/spot/instance-action", events=store).body)
    assert action["action"] == "hibernate"
    store.add(Event("d", Kind.TERMINATE, ("vm1",), T0 + 120, T0, code="asg-termination"))
    assert call(api, "/latest/meta-data/autoscaling/target-lifecycle-state", events=store).body == b"Terminated"
    assert len(json.loads(call(api, "/latest/meta-data/events/maintenance/scheduled", events=store).body)) == 2


def test_an_instance_sees_only_its_own_events_not_its_availability_sets(api) -> None:
    store = EventStore([Event("w", Kind.REBOOT, ("vm2",), T0 + 60, T0, avset="web")])  # vm1 is in set web too
    assert json.loads(call(api, "/latest/meta-data/events/maintenance/scheduled", events=store).body) == []
    assert len(json.loads(call(api, "/latest/meta-data/events/maintenance/scheduled", events=store,
                               caller=make_vm("vm2")).body)) == 1


def test_a_token_is_checked_the_same_from_the_recent_cache_and_from_its_mac() -> None:
    issuer = TokenIssuer(b"k" * 32)
    token = issuer.mint("vm-a", 60, T0)
    # the issuer remembers it; a second one with the node's secret checks its MAC only
    for checker in (issuer, TokenIssuer(b"k" * 32)):
        assert checker.valid(token, "vm-a", T0 + 59.9)
        assert not checker.valid(token, "vm-b", T0)  # another VM's
        assert not checker.valid(token, "vm-a", T0 + 60)  # expired
    assert not TokenIssuer(b"j" * 32).valid(token, "vm-a", T0)  # another node's
    for i in range(RECENT + 1):  # the cache is emptied when full: the MAC still says yes
        issuer.mint("vm-a", 60, T0 + i)
    assert issuer.valid(token, "vm-a", T0)


class CountingView(EventStore):
    """An EventStore that counts how often the flavor reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def events_for(self, vm: str, avset: str = "") -> tuple:
        self.reads += 1
        return super().events_for(vm, avset)

    def history_for(self, vm: str, avset: str = "") -> tuple:
        self.reads += 1
        return super().history_for(vm, avset)


def test_static_items_are_answered_without_reading_the_events_and_lazy_ones_only_when_served(api) -> None:
    view = CountingView()
    for path in ("instance-id", "placement/region", "network/interfaces/macs/", "mac"):
        assert call(api, f"/latest/meta-data/{path}", events=view).status == 200
    assert call(api, "/2021-03-23/meta-data/local-ipv4", events=view).status == 200
    assert view.reads == 0
    assert call(api, "/latest/meta-data/events/maintenance/scheduled", events=view).body == b"[]"
    assert view.reads == 1  # the live events; the history is not read for the scheduled ones
    assert call(api, "/latest/meta-data/events/maintenance/history", events=view).body == b"[]"
    assert view.reads == 3
    listing = call(api, "/latest/meta-data/events/", events=view).body.decode().split("\n")
    assert listing == ["maintenance/", "recommendations/"]
    assert call(api, "/latest/meta-data/events/recommendations/", events=view).body == b""
    assert call(api, "/latest/meta-data/events/recommendations/rebalance", events=view).status == 404
