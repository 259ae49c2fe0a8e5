"""The seed's walk on AWS: with the AWS drain agent (IMDSv2 polls) a maintenance walk under
load fails no request (needs root)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from netsim.model import load
from netsim.tools import demo

pytestmark = pytest.mark.root


def test_with_the_aws_drain_agent_a_walk_under_load_fails_no_request() -> None:
    base = replace(load(), cloud="aws", location="us-east-1")
    run = demo.run_walk(True, notice=2, downtime=3, rate=80, name=f"wa{os.getpid() % 1000}", base=base)
    assert run.requests >= 80 * 10
    assert run.failed == 0, (run.errors, run.failures, run.windows)
    assert [w[0] for w in run.windows] == ["web1", "web2", "web3"]  # one update domain at a time
