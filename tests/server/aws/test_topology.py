"""The topology keys of the AWS flavor: defaults, per-VM IMDS options and bad input."""

from __future__ import annotations

import pytest

from netsim.errors import TopologyError
from netsim.model.load import parse
from netsim.runtime.identity import identity_of

AWS = """
[datacenter]
cloud = "aws"
{dc}
[[node]]
name = "n1"

[[vm]]
name = "a1"
{vm}
"""


def test_an_aws_datacenter_defaults_to_us_east_1_and_imds_defaults() -> None:
    dc = parse(AWS.format(dc="", vm=""))
    assert dc.location == "us-east-1" and dc.vm("a1").size == "m5.large"
    vm = dc.vm("a1")
    assert (vm.http_tokens, vm.hop_limit, vm.iam_role, vm.user_data) == ("optional", 1, "", "")
    assert parse(AWS.format(dc="", vm="").replace('cloud = "aws"', 'cloud = "azure"')).location == "westeurope"


def test_the_imds_options_reach_the_identity_the_server_answers_for() -> None:
    dc = parse(AWS.format(dc='location = "eu-west-3"', vm='http_tokens = "required"\nhop_limit = 2\n'
                                                         'iam_role = "r"\nuser_data = "x"'))
    who = identity_of(dc, "a1")
    assert (who.location, who.http_tokens, who.hop_limit, who.iam_role, who.user_data) == (
        "eu-west-3", "required", 2, "r", "x")


@pytest.mark.parametrize("dc_keys, vm_keys, field, words", [
    ("", "hop_limit = 0", "vm[0].hop_limit", "1 to 64"),
    ("", "hop_limit = 65", "vm[0].hop_limit", "1 to 64"),
    ("", 'hop_limit = "2"', "vm[0].hop_limit", "integer"),
    ("", 'http_tokens = "always"', "vm[0].http_tokens", "'optional' or 'required'"),
    ('location = "westeurope"', "", "datacenter.location", "AWS region"),
])
def test_bad_aws_keys_name_the_field_and_the_allowed_values(dc_keys, vm_keys, field, words) -> None:
    with pytest.raises(TopologyError) as info:
        parse(AWS.format(dc=dc_keys, vm=vm_keys), "dc.toml")
    message = str(info.value)
    assert f"field '{field}'" in message and words in message and "\n" not in message
