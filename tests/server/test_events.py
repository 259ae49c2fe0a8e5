"""The cloud-neutral event model: Event validation, EventStore and its history, flavor
mappings; the rate limiter and the document helpers."""

from __future__ import annotations

import pytest

from netsim_imds.azure.documents import rfc1123, us_datetime
from netsim_imds.azure.events import EVENTS as AZURE, duration_in_seconds, event_type
from netsim_imds.events import (Event, EventError, EventMapping, EventStore, EventView, Kind, KindRule, Source,
                                Status, mapping_for, register)
from netsim_imds.ratelimit import RateLimiter


def ev(event_id="e1", resources=("vm1",), avset="web", not_before=100.0, **kw) -> Event:
    return Event(event_id, kw.pop("kind", Kind.REBOOT), resources, not_before, 0.0, avset=avset, **kw)


def test_store_is_an_event_view() -> None:
    assert isinstance(EventStore(), EventView)


def test_incarnation_increases_on_every_change_only() -> None:
    store = EventStore()
    seen = [store.document_incarnation]
    store.add(ev("a"))
    seen.append(store.document_incarnation)
    store.events_for("vm1", "web")
    seen.append(store.document_incarnation)  # reading changes nothing
    store.start("a")
    seen.append(store.document_incarnation)
    store.start("a")  # already started: no change
    seen.append(store.document_incarnation)
    assert store.remove("a") and not store.remove("a")
    seen.append(store.document_incarnation)
    assert seen == [1, 2, 2, 3, 3, 4]


def test_visibility_by_resource_and_availability_set() -> None:
    store = EventStore([ev("a", ("vm1",), "web"), ev("b", ("vm5",), ""), ev("c", ("vm7",), "db")])
    assert [e.event_id for e in store.events_for("vm1", "web")] == ["a"]
    assert [e.event_id for e in store.events_for("vm2", "web")] == ["a"]
    assert [e.event_id for e in store.events_for("vm5", "")] == ["b"]
    assert store.events_for("vm9", "") == ()
    assert ev("a", ("vm1",), "").visible_to("vm1") and not ev("a", ("vm1",), "").visible_to("vm2", "")


def test_approve_starts_once_and_calls_back_once() -> None:
    calls = []
    store = EventStore([ev()], on_approve=calls.append)
    assert store.approve("e1") and store.approve("e1")
    assert store.get("e1").status == "Started" and [c.status for c in calls] == ["Started"]
    assert not store.approve("nope")


def test_start_due_follows_not_before() -> None:
    store = EventStore([ev("a", not_before=100), ev("b", not_before=200)])
    assert store.start_due(99.9) == []
    assert [e.event_id for e in store.start_due(150)] == ["a"]
    assert [e.event_id for e in store.start_due(500)] == ["b"]
    assert [e.status for e in store.all()] == ["Started", "Started"]


def test_store_misuse_names_the_event() -> None:
    store = EventStore([ev("a")])
    with pytest.raises(EventError, match="a already exists"):
        store.add(ev("a"))
    with pytest.raises(EventError, match="no event zz"):
        store.start("zz")


@pytest.mark.parametrize("kw", [dict(kind="Pause"), dict(kind="Freeze"), dict(status="Done"), dict(source="Fabric"),
                                dict(resources="vm1"), dict(duration_s=-1), dict(duration_s=2.5)])
def test_event_fields_are_validated(kw) -> None:
    with pytest.raises(EventError):
        ev(**kw)


def test_the_lifecycle_keeps_history_that_live_views_do_not_show() -> None:
    store = EventStore([ev("a"), ev("b")])
    store.start("a")
    before = store.document_incarnation
    done = store.end("a", 150.0)
    canceled = store.end("b", 160.0, Status.CANCELED)
    assert (done.status, done.ended, canceled.status) == (Status.COMPLETED, 150.0, Status.CANCELED)
    assert store.document_incarnation == before + 2 and store.events_for("vm1", "web") == ()
    assert [e.event_id for e in store.history_for("vm2", "web")] == ["a", "b"]
    assert store.end("a", 170.0) is None
    with pytest.raises(EventError, match="Scheduled or Started"):
        store.add(done)
    with pytest.raises(EventError, match="Completed or Canceled"):
        EventStore([ev("c")]).end("c", 1.0, Status.STARTED)


def test_azures_mapping_names_kinds_and_shows_no_history() -> None:
    assert mapping_for("azure") is AZURE
    assert AZURE.names() == ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")
    assert AZURE.kind_of("Freeze") is Kind.PAUSE and AZURE.source_of("User") is Source.USER
    assert (event_type(ev(kind=Kind.PAUSE)), duration_in_seconds(ev()), duration_in_seconds(ev(duration_s=0))) == (
        "Freeze", -1, 0)
    with pytest.raises(EventError, match=r"not one of \('Freeze'"):
        AZURE.kind_of("pause")
    assert not AZURE.shows(ev(status="Completed", ended=1.0)) and AZURE.shows(ev(status="Started"))
    assert not AZURE.shows(ev(kind=Kind.NOTICE))  # Azure has no name for a notice


def test_a_flavor_registers_its_own_words() -> None:
    toy = register(EventMapping("toy-events", {Kind.NOTICE: KindRule("heads-up", 60.0, 0.0, "fyi")},
                                maintenance_description="m", emergency_description="e", shows_history=True))
    assert mapping_for("toy-events") is toy and toy.kind_of("heads-up") is Kind.NOTICE
    assert toy.shows(ev(kind=Kind.NOTICE, status="Canceled", ended=2.0))
    with pytest.raises(EventError, match="no event mapping for cloud 'nowhere'"):
        mapping_for("nowhere")
    with pytest.raises(EventError, match="no event for kind"):
        toy.rule(Kind.REBOOT)


def test_time_formats() -> None:
    assert rfc1123(1474309787) == "Mon, 19 Sep 2016 18:29:47 GMT"
    assert us_datetime(1442299371) == "9/15/2015 6:42:51 AM"
    assert us_datetime(1442299371 + 6 * 3600) == "9/15/2015 12:42:51 PM"
    assert us_datetime(1442299371 - 6 * 3600 - 42 * 60) == "9/15/2015 12:00:51 AM"


def test_token_bucket_on_an_invented_timeline() -> None:
    rl = RateLimiter(5)
    assert [rl.allow("a", 10.0) for _ in range(6)] == [True] * 5 + [False]
    assert rl.retry_after("a", 10.0) == pytest.approx(0.2)
    assert not rl.allow("a", 10.1) and rl.allow("a", 10.3)
    assert rl.allow("b", 10.3)
    assert not rl.allow("a", 9.0)  # a clock going back refills nothing
    assert [rl.allow("a", 100.0) for _ in range(6)].count(True) == 5  # the bucket never holds more than 5


def test_rate_limiter_forgets_idle_keys_when_full() -> None:
    rl = RateLimiter(5, max_keys=3)
    for k in "abc":
        rl.allow(k, 0.0)
    assert rl.allow("d", 10.0)  # a, b, c are full again: pruned, d admitted
    assert [rl.allow("d", 10.0) for _ in range(5)].count(True) == 4
    with pytest.raises(ValueError):
        RateLimiter(0)
