"""cloud-init's Azure datasource, Debian's package unmodified, reads a VM's user, hostname,
SSH keys and user data from the topology, inside the VM (needs root).

cloud-init is never installed on this host (a cloud VM, where it could act at the next
boot): ``scripts/setup`` unpacks Debian's .deb into ``.cloud-init/root`` and runs it with
``.cloud-init/python`` (its own interpreter and PyPI dependencies). The script below drives
the datasource's own IMDS code, as ``DataSourceAzure.crawl_metadata`` does after its
ephemeral DHCP (which has no place in a namespace): ``get_imds_data_with_api_fallback``
(api-version 2021-08-01, else 2019-06-01, ``Metadata: true``), the module's
``_username_from_imds``/``_hostname_from_imds``/``_disable_password_from_imds``/
``_userdata_from_imds``, and ``get_public_ssh_keys``.
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import pytest

from tests.server.azure.test_clients import env
from tests.server.support import installed

pytestmark = pytest.mark.root

CLOUD_INIT = pathlib.Path(__file__).resolve().parents[3] / ".cloud-init" / "python"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHGqmKa3E7KnOKiJbv8VCEr5vDE4c8jK0mFi0FV6K0Bq ops@laptop"
USER_DATA = "#cloud-config\nruncmd:\n  - echo hello from netsim\n"
TOPOLOGY = f"""
[datacenter]
linklocal = "static"

[[node]]
name = "n1"

[[vm]]
name = "web1"
admin_username = "ops"
ssh_keys = ["{KEY}"]
user_data = {json.dumps(USER_DATA)}
tags = {{ role = "web" }}
"""

# DataSourceAzure as cloud-init's init stage builds it, then its IMDS steps.
READ = """
import base64, json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # cloud-init's log, shown if the test fails
from cloudinit import distros, helpers
from cloudinit.sources import DataSourceAzure as az
run = sys.argv[1]
paths = helpers.Paths({"cloud_dir": run + "/cloud", "run_dir": run + "/run"})
distro = distros.fetch("debian")("debian", {}, paths)
ds = az.DataSourceAzure({}, distro, paths)
imds = ds.get_imds_data_with_api_fallback(retries=10)  # as crawl_metadata calls it
ds.metadata = {"imds": imds}
print(json.dumps({
    "user": az._username_from_imds(imds),
    "hostname": az._hostname_from_imds(imds),
    "disable_password": az._disable_password_from_imds(imds),
    "user_data": base64.b64decode(az._userdata_from_imds(imds)).decode(),
    "keys": ds.get_public_ssh_keys(),
    "tags": imds["compute"]["tagsList"],
    "macs": [nic["macAddress"] for nic in imds["network"]["interface"]],
}))
"""


@pytest.fixture
def cloud_init() -> str:
    return installed(CLOUD_INIT, "Debian's cloud-init, unpacked, and its interpreter")


def test_cloud_init_azure_datasource_reads_the_topology(datacenter_factory, cloud_init) -> None:
    dc = datacenter_factory(TOPOLOGY)
    with tempfile.TemporaryDirectory(prefix="cloud-init-") as run:
        out = dc.run("web1", [cloud_init, "-c", READ, run], capture_output=True, text=True, timeout=120, env=env())
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert (got["user"], got["hostname"], got["disable_password"]) == ("ops", "web1", True)
    assert got["keys"] == [KEY]
    assert got["user_data"] == USER_DATA
    assert got["tags"] == [{"name": "role", "value": "web"}]
    assert got["macs"] == [dc.topology.address_plan.vm("web1").mac.replace(":", "").upper()]
