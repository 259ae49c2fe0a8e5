"""botocore, unmodified from PyPI, inside VMs of an aws datacenter (needs root):
``InstanceMetadataFetcher`` (role credentials), ``InstanceMetadataRegionFetcher`` and the
session's credential chain (the instance metadata provider), over IMDSv2 with
``http_tokens = "required"``, from the VM and from a namespace one routed hop behind it,
with hop limits 1 and 2.

botocore lives in its own virtual environment, ``.venv-clients`` (``scripts/setup``
installs it there), never in netsim's.
"""

from __future__ import annotations

import json

import pytest

from netsim.kernel import hostexec
from tests.server.aws.support import NO_PROXY, clients_with
from tests.server.aws.test_aws_datacenter import routed_behind

pytestmark = pytest.mark.root

TOPOLOGY = """
[datacenter]
cloud = "aws"
location = "eu-west-3"
linklocal = "static"

[[node]]
name = "n1"

[[vm]]
name = "c1"
iam_role = "role-one"
http_tokens = "required"
hop_limit = 1

[[vm]]
name = "c2"
iam_role = "role-two"
http_tokens = "required"
hop_limit = 2
"""

BOTOCORE = """
import json, logging, os
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher
import botocore.session
creds = InstanceMetadataFetcher(timeout=2, num_attempts=1).retrieve_iam_role_credentials()
region = InstanceMetadataRegionFetcher(timeout=2, num_attempts=1).retrieve_region()
chain = botocore.session.get_session().get_credentials()
print(json.dumps({"role": creds.get("role_name"), "access_key": creds.get("access_key"),
                  "token": bool(creds.get("token")), "expiry": creds.get("expiry_time"), "region": region,
                  "method": chain.method if chain else None,
                  "chain_key": chain.get_frozen_credentials().access_key if chain else None}))
"""

# botocore reads no file of the host's: a HOME of its own, no keys in the environment.
ENV = {**{k: v for k, v in NO_PROXY.items() if not k.startswith("AWS_")}, "HOME": "/nonexistent",
       "AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
       "AWS_METADATA_SERVICE_TIMEOUT": "2", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1"}


@pytest.fixture
def clients() -> str:
    return clients_with("botocore")


@pytest.fixture
def aws_dc(datacenter_factory):
    return datacenter_factory(TOPOLOGY)


def botocore_in(ns: str, python: str) -> dict:
    out = hostexec.run(ns, [python, "-c", BOTOCORE], env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("vm, role", [("c1", "role-one"), ("c2", "role-two")])
def test_botocore_gets_role_credentials_and_region_over_imdsv2_from_the_vm(aws_dc, clients, vm, role) -> None:
    got = botocore_in(aws_dc.namespace(vm), clients)
    assert got["role"] == role and got["access_key"].startswith("ASIA") and got["token"]
    assert got["region"] == "eu-west-3" and got["expiry"].endswith("Z")
    assert got["method"] == "iam-role" and got["chain_key"] == got["access_key"]


def test_botocore_behind_the_vm_needs_hop_limit_2(aws_dc, clients) -> None:
    with routed_behind(aws_dc, "c1") as ns:  # hop limit 1: the token dies on the extra hop, v1 is refused
        got = botocore_in(ns, clients)
        assert got["role"] is None and got["region"] is None and got["method"] is None
    with routed_behind(aws_dc, "c2") as ns:  # hop limit 2: the token arrives
        got = botocore_in(ns, clients)
        assert got["role"] == "role-two" and got["region"] == "eu-west-3" and got["method"] == "iam-role"
