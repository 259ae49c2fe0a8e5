"""AWS's IMDSv2 hop limit seen from real containers (``containers = [...]`` in the
topology, needs root): a container is one routed hop behind its VM, so the token reply,
sent with IP TTL = the VM's hop limit, dies on that hop with hop limit 1 and arrives with
2, for curl in the form of AWS's docs and for botocore, unmodified, from ``.venv-clients``.
(``tests/server/aws/test_aws_datacenter.py`` shows the same with a test-made namespace.)
"""

from __future__ import annotations

import pytest

from netsim.kernel import hostexec
from tests.server.aws.test_aws_datacenter import NO_PROXY, wait_until
from tests.server.aws.test_clients import TOPOLOGY as CLIENTS_TOPOLOGY
from tests.server.aws.test_clients import botocore_in, clients  # noqa: F401  (a fixture)

pytestmark = pytest.mark.root

# test_clients.py's VMs (hop limits 1 and 2, IMDSv2 required), each with a container.
TOPOLOGY = CLIENTS_TOPOLOGY.replace("hop_limit = 1\n", 'hop_limit = 1\ncontainers = ["app"]\n').replace(
    "hop_limit = 2\n", 'hop_limit = 2\ncontainers = ["app"]\n')

TOKEN = ["curl", "-s", "--max-time", "3", "-X", "PUT", "http://169.254.169.254/latest/api/token",
         "-H", "X-aws-ec2-metadata-token-ttl-seconds: 21600"]


@pytest.fixture
def aws_dc(datacenter_factory):
    dc = datacenter_factory(TOPOLOGY)
    for vm in ("c1", "c2"):  # each VM's own first token (its node learns it), then the containers
        wait_until(lambda: len(dc.run(vm, TOKEN, env=NO_PROXY).stdout) == 44, 20, f"{vm}'s first token")
    return dc


def test_a_containers_token_put_dies_with_hop_limit_1_and_arrives_with_2(aws_dc) -> None:
    one = aws_dc.run("c1/app", TOKEN, env=NO_PROXY, timeout=20)
    assert one.returncode == 28 and one.stdout == "", (one.returncode, one.stdout)  # 28: curl timed out
    two = aws_dc.run("c2/app", TOKEN, env=NO_PROXY, timeout=20)
    assert two.returncode == 0 and len(two.stdout) == 44
    # AWS's documented form, token then GET, answered as the container's VM
    script = (f'TOKEN=`{" ".join(TOKEN[:7])} -H "X-aws-ec2-metadata-token-ttl-seconds: 21600"` && '
              'curl -s -H "X-aws-ec2-metadata-token: $TOKEN" '
              "http://169.254.169.254/latest/meta-data/iam/security-credentials/")
    assert aws_dc.run("c2/app", ["sh", "-c", script], env=NO_PROXY, timeout=20).stdout == "role-two"


def test_botocore_in_a_container_gets_credentials_only_with_hop_limit_2(aws_dc, clients) -> None:  # noqa: F811
    got = botocore_in(hostexec.host_namespace(aws_dc.topology, "c1/app"), clients)
    assert got["role"] is None and got["region"] is None and got["method"] is None
    got = botocore_in(aws_dc.namespace("c2/app"), clients)
    assert got["role"] == "role-two" and got["access_key"].startswith("ASIA") and got["token"]
    assert got["region"] == "eu-west-3" and got["method"] == "iam-role"
