"""Numbers at the planner and repository boundaries: nothing non-finite or out of range is
filed or stored, and a refused input leaves planner and repository exactly as they were."""

from __future__ import annotations

import json
import math
import random

import pytest

from netsim_imds.events import Event, EventError

from netsim.maintenance.errors import MaintenanceError, RepositoryError
from netsim.maintenance.planner import Planner
from netsim.maintenance.repository import Repository

T = 5000.0
WEB = [("vm1", "n1", 0), ("vm2", "n2", 1)]
BAD = [math.nan, math.inf, -math.inf, 1e308, -1, 8 * 86400, True, "60", None]


def _planner() -> Planner:
    planner = Planner(random.Random(7))
    for node in ("n1", "n2"):
        planner.heartbeat(node, T)
    planner.add_event("vm9", "n1", "web", "reboot", T, notice_s=60)  # something to keep
    planner.pop_actions()
    return planner


def _same(planner: Planner, before: dict) -> None:
    assert json.dumps(planner.to_dict(), sort_keys=True) == json.dumps(before, sort_keys=True)
    assert planner.pop_actions() == []


@pytest.mark.parametrize("notice", [v for v in BAD if v is not None])
def test_a_bad_notice_files_no_event_and_changes_nothing(notice) -> None:
    planner = _planner()
    before = planner.to_dict()
    with pytest.raises(MaintenanceError, match=r"notice must be a number from 0 to 604800 seconds"):
        planner.add_event("vm1", "n1", "web", "reboot", T, notice_s=notice)
    _same(planner, before)


@pytest.mark.parametrize("duration", [math.nan, math.inf, 1e308, -2, 5.5, 8 * 86400, True, "5"])
def test_a_bad_duration_files_no_event(duration) -> None:
    planner = _planner()
    before = planner.to_dict()
    with pytest.raises(MaintenanceError, match=r"duration must be an integer from 0 to 604800 seconds, or -1"):
        planner.add_event("vm1", "n1", "web", "pause", T, notice_s=60, duration_s=duration)
    _same(planner, before)


@pytest.mark.parametrize("notice, downtime", [(math.nan, 60), (math.inf, 60), (60, math.inf), (60, math.nan),
                                              (1e308, 60), (60, 1e308), (60, -5), ("900", 60)])
def test_a_bad_walk_starts_no_walk(notice, downtime) -> None:
    # Before the fix, downtime=inf left a walk in "notice" without its event (math.ceil raised).
    planner = _planner()
    before = planner.to_dict()
    with pytest.raises(MaintenanceError, match="must be a number from 0 to 604800 seconds"):
        planner.start_walk("web", WEB, notice, downtime, T)
    _same(planner, before)
    assert planner.walks() == ()


def test_the_extremes_of_the_ranges_are_accepted() -> None:
    planner = _planner()
    week = 7 * 86400
    event = planner.event(planner.add_event("vm1", "n1", "web", "pause", T, notice_s=week, duration_s=week))
    assert (event.not_before, event.duration_s) == (T + week, week)
    walk = planner.walk_status(planner.start_walk("web", WEB, 0, week, T))
    assert walk.state == "notice"


@pytest.mark.parametrize("settings", [dict(heartbeat_timeout_s=math.nan), dict(heartbeat_timeout_s=0),
                                      dict(notices={"reboot": math.inf}), dict(notices={"reboot": -1})])
def test_bad_planner_settings_are_refused(settings) -> None:
    with pytest.raises(MaintenanceError, match="must be a number"):
        Planner(random.Random(7), **settings)


def _event(**kw) -> Event:
    fields = dict(kind="reboot", resources=("vm1",), not_before=T + 900, created=T, duration_s=60, avset="web")
    fields.update(kw)
    return Event("e1", **fields)


@pytest.mark.parametrize("kw, field", [(dict(not_before=math.inf), "not_before"), (dict(not_before=math.nan),
                                       "not_before"), (dict(not_before=1e308), "not_before"),
                                       (dict(created=math.nan), "created"), (dict(duration_s=10**12), "duration_s"),
                                       (dict(not_after=math.inf), "not_after")])
def test_the_repository_stores_nothing_it_could_not_serve(repo: Repository, kw, field) -> None:
    repo.put_event("n1", _event(not_before=T + 60))
    before = (repo.events("n1"), repo.incarnation("n1"))
    with pytest.raises(RepositoryError, match=f"event e1 {field} must be"):
        repo.put_event("n1", _event(**kw))
    with pytest.raises(RepositoryError, match="was not stored"):
        repo.put_event("n2", Event("e2", "pause", ("vm2",), math.inf, T))
    assert (repo.events("n1"), repo.incarnation("n1")) == before
    assert repo.all_events() == {"n1": before[0]}


@pytest.mark.parametrize("duration", [-7, -1, 1.5, True, "5"])
def test_an_event_refuses_a_duration_that_is_not_whole_seconds_or_unknown(duration) -> None:
    # One meaning of "unknown": None; -1 is only how Azure shows it.
    with pytest.raises(EventError, match="or None when unknown"):
        _event(duration_s=duration)
    assert _event(duration_s=None).duration_s is None
