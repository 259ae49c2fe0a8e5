"""Host settings (the ARP cache limits): recorded once, held by every datacenter, put back
when the last one goes. The decisions are pure; the I/O runs on a folder of fake sysctls."""

import json
import os

import pytest

from netsim.kernel import hostsettings
from netsim.kernel.hostsettings import plan_hold, plan_release

T3, T2 = "net/ipv4/neigh/default/gc_thresh3", "net/ipv4/neigh/default/gc_thresh2"


def test_first_raise_records_the_original_and_a_second_holder_writes_nothing():
    rec, writes = plan_hold({}, "a", [10, "1"], {T3: 1024, T2: 512}, {T3: 1064, T2: 532})
    assert writes == {T3: 1064, T2: 532}
    assert rec["original"] == {T3: 1024, T2: 512} and rec["written"] == writes
    rec, writes = plan_hold(rec, "b", [11, "2"], {T3: 1064, T2: 532}, {T3: 1064, T2: 532})
    assert writes == {} and set(rec["holders"]) == {"a", "b"}
    assert rec["original"] == {T3: 1024, T2: 512}  # the value before netsim, not a raised one


def test_limits_are_only_raised():
    rec, writes = plan_hold({}, "a", [10, "1"], {T3: 9000, T2: None}, {T3: 1064, T2: 532})
    assert writes == {} and rec["original"] == {} and rec["holders"] == {"a": [10, "1"]}


def test_release_restores_only_when_the_last_live_holder_goes():
    rec, _ = plan_hold({}, "a", [10, "1"], {T3: 1024}, {T3: 1064})
    rec, _ = plan_hold(rec, "b", [11, "2"], {T3: 1064}, {T3: 2000})
    assert rec["written"] == {T3: 2000} and rec["original"] == {T3: 1024}
    kept, writes = plan_release(rec, "a", live={"b"}, current={T3: 2000})
    assert writes == {} and set(kept["holders"]) == {"b"}
    gone, writes = plan_release(kept, "b", live=set(), current={T3: 2000})
    assert gone is None and writes == {T3: 1024}


def test_a_holder_that_left_nothing_behind_does_not_pin_the_settings():
    rec, _ = plan_hold({}, "crashed", [10, "1"], {T3: 1024}, {T3: 1064})
    rec, _ = plan_hold(rec, "b", [11, "2"], {T3: 1064}, {T3: 1064})
    gone, writes = plan_release(rec, "b", live=set(), current={T3: 1064})
    assert gone is None and writes == {T3: 1024}


def test_a_value_someone_else_changed_is_theirs_and_stays():
    rec, _ = plan_hold({}, "a", [10, "1"], {T3: 1024}, {T3: 1064})
    gone, writes = plan_release(rec, "a", live=set(), current={T3: 5000})
    assert gone is None and writes == {}
    # ... and if netsim raises over their value later, theirs is what it goes back to.
    rec, _ = plan_hold(rec, "b", [11, "2"], {T3: 1030}, {T3: 1064})
    assert rec["original"] == {T3: 1030}


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    sysctl = tmp_path / "sys"
    (sysctl / "net/ipv4/neigh/default").mkdir(parents=True)
    for name, value in (("gc_thresh1", 128), ("gc_thresh2", 512), ("gc_thresh3", 1024)):
        (sysctl / "net/ipv4/neigh/default" / name).write_text(f"{value}\n")
    monkeypatch.setenv("NETSIM_SYSCTL_ROOT", str(sysctl))
    monkeypatch.setenv("NETSIM_RUN_DIR", str(tmp_path / "run"))
    return sysctl / "net/ipv4/neigh/default", tmp_path / "run" / hostsettings.RECORD


def _values(folder):
    return {name: int((folder / name).read_text()) for name in ("gc_thresh1", "gc_thresh2", "gc_thresh3")}


def test_hold_and_release_on_files(fake_host):
    folder, record = fake_host
    wanted = {T3: 1064, T2: 532, "net/ipv4/neigh/default/gc_thresh1": 266}
    assert hostsettings.hold("x1", wanted) == wanted
    assert _values(folder) == {"gc_thresh1": 266, "gc_thresh2": 532, "gc_thresh3": 1064}
    assert json.loads(record.read_text())["holders"]["x1"][0] == os.getpid()
    assert hostsettings.hold("x2", wanted) == {}
    assert hostsettings.release("nobody") == {}  # not a holder: changes nothing
    # x2 is held by this live process, so releasing x1 keeps the raise.
    assert hostsettings.release("x1") == {}
    assert _values(folder)["gc_thresh3"] == 1064
    assert hostsettings.release("x2") == {"net/ipv4/neigh/default/gc_thresh1": 128, T2: 512, T3: 1024}
    assert _values(folder) == {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024}
    assert not record.exists()


def test_a_damaged_record_is_set_aside(fake_host):
    folder, record = fake_host
    record.parent.mkdir(parents=True)
    record.write_text('{"original": {')
    assert hostsettings.hold("x1", {T3: 1064}) == {T3: 1064}
    assert (record.parent / (hostsettings.RECORD + ".corrupt")).exists()
    assert hostsettings.release("x1") == {T3: 1024}
