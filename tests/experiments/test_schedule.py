"""The experiment's timeline, sans-IO: invented steps on an invented clock, exact times."""

import pytest

from netsim.errors import IllegalInput
from netsim.experiments.schedule import Phase, Schedule
from netsim.experiments.spec import Step


def steps(*specs: Step) -> tuple[Step, ...]:
    return tuple(specs)


def test_steps_start_at_their_time_in_file_order_and_not_before():
    s = Schedule(steps(Step("b", "node_fail", at=5.0), Step("a", "event", at=0.0), Step("c", "vm_start", at=5.0)), 60)
    assert [x.name for x in s.advance(0.0)] == ["a"]
    assert s.advance(4.99) == []
    assert s.next_deadline() == 5.0
    assert [x.name for x in s.advance(5.0)] == ["b", "c"]
    assert s.advance(6.0) == []  # a step starts once
    assert s.state("b").started == 5.0 and s.state("b").phase is Phase.RUNNING


def test_a_step_after_another_is_due_offset_seconds_after_it_ends():
    s = Schedule(steps(Step("walk", "walk", at=2.0), Step("next", "wait", after="walk", offset=1.5,
                                                          args={"seconds": 3})), 60)
    assert [x.name for x in s.advance(2.0)] == ["walk"]
    assert s.state("next").due is None and s.next_deadline() == 60  # only the bound: the walk is observed
    s.end("walk", 10.0)
    assert s.state("next").due == 11.5 and s.next_deadline() == 11.5
    assert s.advance(11.0) == []
    assert [x.name for x in s.advance(11.5)] == ["next"]
    assert s.next_deadline() == 14.5  # the wait ends by itself
    s.advance(14.0)
    assert s.state("next").phase is Phase.RUNNING
    s.advance(20.0)  # a late poll: the wait still ends at its own time
    assert (s.state("next").phase, s.state("next").ended) == (Phase.ENDED, 14.5)
    assert s.done() and s.next_deadline() is None


def test_a_wait_that_ends_releases_its_follower_in_the_same_advance():
    s = Schedule(steps(Step("w", "wait", at=0.0, args={"seconds": 2}), Step("f", "fault", after="w")), 60)
    s.advance(0.0)
    assert [x.name for x in s.advance(2.0)] == ["f"]
    assert s.state("f").started == 2.0


def test_followers_of_a_failed_step_are_skipped_transitively():
    s = Schedule(steps(Step("a", "event", at=0.0), Step("b", "walk", after="a"), Step("c", "exec", after="b"),
                       Step("d", "vm_start", at=1.0)), 60)
    s.advance(0.0)
    s.end("a", 0.5, ok=False, detail="refused: no vm")
    assert s.state("b").phase is Phase.SKIPPED and s.state("c").phase is Phase.SKIPPED
    assert "a did not succeed" in s.state("b").detail and "b did not succeed" in s.state("c").detail
    assert not s.done()
    assert [x.name for x in s.advance(1.0)] == ["d"]


def test_a_background_load_runs_until_the_others_are_over():
    s = Schedule(steps(Step("load", "load", at=0.0, args={"duration": None}),
                       Step("walk", "walk", at=1.0), Step("timed", "load", at=0.0, args={"duration": 5})), 60)
    s.advance(1.0)
    assert not s.foreground_done()
    s.end("walk", 9.0)
    assert not s.foreground_done()  # a load with a duration is foreground
    s.end("timed", 9.0)
    assert s.foreground_done() and not s.done()
    s.end("load", 9.1)
    assert s.done()


def test_at_the_bound_running_steps_fail_pending_ones_are_skipped_and_nothing_starts():
    s = Schedule(steps(Step("load", "load", at=0.0, args={"duration": None}), Step("walk", "walk", at=0.0),
                       Step("late", "event", at=30.0), Step("after", "exec", after="walk")), 20)
    s.advance(0.0)
    assert s.advance(25.0) == []  # past the bound
    assert s.expire(20.0) == ["walk"]
    assert s.state("walk").ok is False and "experiment's end" in s.state("walk").detail
    assert s.state("load").ok is True  # a background load ends at the bound as it would at the end
    assert {s.state(n).phase for n in ("late", "after")} == {Phase.SKIPPED}
    assert s.done()


def test_illegal_transitions_name_the_step_and_the_state():
    s = Schedule(steps(Step("a", "event", at=0.0)), 10)
    with pytest.raises(IllegalInput, match="step a: input end is not allowed in state PENDING"):
        s.end("a", 1.0)
    s.advance(0.0)
    s.end("a", 1.0)
    with pytest.raises(IllegalInput, match="ENDED"):
        s.end("a", 2.0)
