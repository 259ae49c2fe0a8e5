"""boto3 and the AWS CLI (v1, ``awscli`` from PyPI), unmodified, inside a VM of an aws
datacenter with ``http_tokens = "required"`` (needs root): boto3's credential chain reaches
the instance metadata provider over IMDSv2 and gets the role's credentials and the region;
``aws configure list`` shows the iam-role credentials and the region. Also the curl forms of
AWS's docs (a token PUT, then GETs with it) through ``netsim exec``, with the expected output.

Nothing reaches a real AWS endpoint: the clients only read credentials and region, which
come from the metadata service, and the datacenter has no route out (checked below). Only
environment variables AWS documents are set (``AWS_METADATA_SERVICE_TIMEOUT``, ``AWS_DEFAULTS_MODE``,
``AWS_METADATA_SERVICE_NUM_ATTEMPTS``, ``AWS_CONFIG_FILE``, ``AWS_SHARED_CREDENTIALS_FILE``).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from netsim.kernel import hostexec
from netsim.model import names
from tests.server.aws.support import CLIENTS, NETSIM, clients_with
from tests.server.aws.test_clients import ENV

pytestmark = pytest.mark.root

AWS_CLI = CLIENTS.parent / "aws"

TOPOLOGY = """
[datacenter]
cloud = "aws"
location = "ap-southeast-2"
linklocal = "static"

[[node]]
name = "n1"

[[vm]]
name = "s1"
iam_role = "web-role"
http_tokens = "required"
"""

# boto3 takes no region from the instance for ``Session().region_name`` (as on EC2), but its
# documented ``defaults_mode = auto`` asks the instance metadata for it: a client of the
# instance's own region gets the in-region connect timeout (1.1 s), another the cross-region
# one (3.1 s). Creating a client sends nothing to AWS.
BOTO3 = """
import json, os
import boto3
session = boto3.Session()
creds = session.get_credentials()
frozen = creds.get_frozen_credentials()
timeouts = {r: boto3.Session().client("sts", region_name=r).meta.config.connect_timeout
            for r in ("ap-southeast-2", "eu-north-1")}
print(json.dumps({"method": creds.method, "access_key": frozen.access_key, "token": bool(frozen.token),
                  "secret": bool(frozen.secret_key), "region": session.region_name, "timeouts": timeouts}))
"""

# AWS's documented IMDSv2 form (instancedata-data-retrieval), as the README shows it.
CURL_V2 = ('TOKEN=`curl -s -X PUT "http://169.254.169.254/latest/api/token" '
           '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600"` '
           '&& curl -s -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/%s')


def exec_sh(dc, script: str) -> str:
    """``netsim exec s1 -- sh -c SCRIPT``'s output (it must succeed)."""
    out = subprocess.run([NETSIM, "exec", "--name", dc.name, "s1", "--", "sh", "-c", script],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "NO_PROXY": "*", "no_proxy": "*"})  # now: the test's state folder
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def sdk() -> str:
    return clients_with("boto3", "awscli")


@pytest.fixture
def aws_dc(datacenter_factory):
    return datacenter_factory(TOPOLOGY)


def test_the_datacenter_has_no_route_out(aws_dc) -> None:
    # What the clients could try (STS, a regional endpoint) is a public address: neither the
    # VM's node nor the fabric routes it anywhere but the fabric, which has no default route.
    out = hostexec.run(names.fabric_ns(aws_dc.name), ["ip", "route", "get", "52.94.0.1"], timeout=10)
    assert out.returncode != 0 and "unreachable" in out.stderr.lower(), (out.stdout, out.stderr)


def test_boto3_gets_the_roles_credentials_and_region_through_the_instance_metadata_provider(aws_dc, sdk) -> None:
    out = hostexec.run(aws_dc.namespace("s1"), [sdk, "-c", BOTO3], env={**ENV, "AWS_DEFAULTS_MODE": "auto"},
                       timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["method"] == "iam-role" and got["access_key"].startswith("ASIA")
    assert got["token"] and got["secret"]
    assert got["region"] is None  # boto3 reads the region from its configuration only ...
    assert got["timeouts"] == {"ap-southeast-2": 1.1, "eu-north-1": 3.1}  # ... and ours from IMDS in auto mode


def test_aws_configure_list_shows_the_iam_role_credentials(aws_dc, sdk) -> None:
    out = hostexec.run(aws_dc.namespace("s1"), [str(AWS_CLI), "configure", "list"], env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:] if line.split()}
    assert rows["access_key"][-1] == "iam-role" and rows["access_key"][0].startswith("****")
    assert rows["secret_key"][-1] == "iam-role"
    creds = json.loads(exec_sh(aws_dc, CURL_V2 % "iam/security-credentials/web-role"))
    assert rows["access_key"][0] == "*" * 16 + creds["AccessKeyId"][-4:]  # the role's key, from IMDS
    assert rows["region"][0] == "<not"  # "<not set>": the CLI, as boto3, takes no region from the instance


def test_the_curl_forms_of_aws_docs_through_netsim_exec(aws_dc) -> None:
    assert exec_sh(aws_dc, CURL_V2 % "placement/region") == "ap-southeast-2"
    assert exec_sh(aws_dc, CURL_V2 % "placement/availability-zone") == "ap-southeast-2a"
    assert exec_sh(aws_dc, CURL_V2 % "iam/security-credentials/") == "web-role"
    creds = json.loads(exec_sh(aws_dc, CURL_V2 % "iam/security-credentials/web-role"))
    assert set(creds) == {"Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
    assert json.loads(exec_sh(aws_dc, CURL_V2 % "events/maintenance/scheduled")) == []
    # IMDSv1 is refused with http_tokens = "required": 401, AWS's XHTML page
    v1 = exec_sh(aws_dc, "curl -s -w ' %{http_code}' http://169.254.169.254/latest/meta-data/")
    assert "<title>401 - Unauthorized</title>" in v1 and v1.endswith(" 401")
