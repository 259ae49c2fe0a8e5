"""The sans-IO fault policy (netsim_imds.faults) on invented timelines and draws."""

from __future__ import annotations

import random

from netsim_imds.faults import HANG_S, FaultTable, HttpFault, status_response


def table(*faults: HttpFault, seed: int = 1) -> FaultTable:
    t = FaultTable(random.Random(seed))
    t.set(list(faults))
    return t


def test_no_fault_no_action_and_scope_by_node_vm_and_path():
    assert table().decide("n1", "web1", "/x", 0) is None
    t = table(HttpFault("f1", vm="web1", status=500), HttpFault("f2", node="n2", status=429, path="/metadata/v1"))
    assert t.decide("n1", "web1", "/x", 0).response.status == 500
    assert t.decide("n1", "web3", "/x", 0) is None
    assert t.decide("n1", None, "/x", 0) is None  # a caller that is no VM: only all/node faults
    assert t.decide("n2", "web2", "/metadata/v1/InstanceInfo", 0).response.status == 429
    assert t.decide("n2", "web2", "/metadata/instance", 0) is None


def test_time_span_start_and_end():
    t = table(HttpFault("f", status=503, starts_at=10, ends_at=20))
    assert [t.decide("n", "v", "/", now) is not None for now in (9.99, 10, 19.99, 20)] == [False, True, True, False]
    assert t.lasts("f", 15) and not t.lasts("f", 20) and not t.lasts("other", 15)


def test_retry_after_is_the_time_left_within_bounds():
    def retry(fault, now):
        return dict(status_response(fault, now).headers).get("Retry-After")
    assert retry(HttpFault("f", status=503, ends_at=100), 95.5) == "5"
    assert retry(HttpFault("f", status=429, ends_at=1000), 0) == "30"
    assert retry(HttpFault("f", status=429), 0) == "1"
    assert retry(HttpFault("f", status=500, ends_at=100), 0) is None


def test_probability_is_drawn_from_the_injected_rng():
    t = table(HttpFault("f", status=500, probability=0.2), seed=7)
    hits = sum(t.decide("n", "v", "/", 0) is not None for _ in range(10000))
    assert 1800 < hits < 2200
    again = table(HttpFault("f", status=500, probability=0.2), seed=7)
    assert sum(again.decide("n", "v", "/", 0) is not None for _ in range(10000)) == hits  # same seed, same draws


def test_delay_jitter_hang_and_the_first_matching_fault_decides():
    t = table(HttpFault("d", vm="a", delay_s=0.5, jitter_s=0.1), HttpFault("h", hang=True, ends_at=50),
              HttpFault("h2", hang=True))
    delays = [t.decide("n", "a", "/", 0).delay_s for _ in range(200)]
    assert all(0.4 <= d <= 0.6 for d in delays) and len(set(delays)) > 1
    hang = t.decide("n", "b", "/", 10)
    assert hang.fault == "h" and hang.hang and hang.until == 50
    assert t.decide("n", "b", "/", 60).until == 60 + HANG_S  # no end: released when cleared


def test_reset_truncate_rate_pass_through():
    t = table(HttpFault("r", vm="a", reset=True), HttpFault("t", vm="b", truncate=10), HttpFault("s", rate=100))
    assert t.decide("n", "a", "/", 0).reset
    assert t.decide("n", "b", "/", 0).truncate == 10
    action = t.decide("n", "c", "/", 0)
    assert action.rate == 100 and action.response is None
