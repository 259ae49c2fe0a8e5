"""Real clients retry through the metadata service's faults and succeed when they end
(issue 13, item 6), as experiments: the faults are steps on the timeline, the client an
``exec`` step inside the VM, and the checks say it recovered within a few seconds of the
last fault's end. Both clients run unmodified: Debian's cloud-init (unpacked by
``scripts/setup`` into ``.cloud-init``, never installed on this host) and azure-identity
from PyPI (in ``.venv-clients``).

cloud-init 22.4's Azure datasource retries 404, 410, 429 and 500 and a timeout (2 s per
request) once a second; azure-identity's IMDS credential retries 404, 410, 429 and 5xx with
backoff (0, 1.6, 3.2 ... s). Each client reports every answer it got, so that the test
proves it met each fault rather than arriving after them.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from netsim.experiments.loader import parse_experiment
from netsim.experiments.runner import run
from netsim.harness.pytest_plugin import unique_name
from tests.server.azure.test_clients import installed

pytestmark = pytest.mark.root

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLOUD_INIT = ROOT / ".cloud-init" / "python"
CLIENTS = ROOT / ".venv-clients" / "bin" / "python"
# No proxy, no AZURE_* settings of the host: the clients see what a VM's would.
CLEAN = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin"

TOPOLOGY = """
[datacenter]
linklocal = "static"

[[node]]
name = "n1"

[[vm]]
name = "web1"
identity = ["system"]
"""

# cloud-init's own fetch (DataSourceAzure.get_imds_data_with_api_fallback), its retry
# callback wrapped only to print what each failed attempt met.
CLOUD_INIT_FETCH = r"""
import sys, time
from cloudinit import distros, helpers
from cloudinit.sources import DataSourceAzure as az
run = sys.argv[1]
t0 = time.monotonic()
def seen(msg, exc):
    print(f"{time.monotonic() - t0:5.1f} s: {getattr(exc, 'code', None) or type(exc.cause).__name__}", flush=True)
    return az.imds_readurl_exception_callback(msg, exc)
paths = helpers.Paths({"cloud_dir": run + "/cloud", "run_dir": run + "/run"})
ds = az.DataSourceAzure({}, distros.fetch("debian")("debian", {}, paths), paths)
imds = ds.get_imds_data_with_api_fallback(retries=40, exc_cb=seen)
print(f"{time.monotonic() - t0:5.1f} s: document of {imds['compute']['name']}" if imds else "no document", flush=True)
sys.exit(0 if imds else 1)
"""

AZURE_IDENTITY = r"""
import logging, sys, time
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
from azure.identity import ManagedIdentityCredential
t0 = time.monotonic()
token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
print(f"{time.monotonic() - t0:5.1f} s: token of {len(token.token)} characters", flush=True)
"""


def experiment(path: str, client: str, faults: list[tuple[str, float, float]], within: float) -> str:
    """An experiment of ``faults`` (option line, start, duration) on web1's ``path``, one
    after the other, a client step, and the checks that it succeeded soon after the last."""
    steps = "".join(f'[[step]]\nname = "f{i}"\ndo = "fault"\ntarget = "web1"\npath = "{path}"\n{option}\n'
                    f'in = {start}\nduration = {duration}\n\n' for i, (option, start, duration) in enumerate(faults))
    return (f'[experiment]\nname = "client"\ntopology = "topology.toml"\nduration = 120\n\n{steps}'
            f'[[step]]\nname = "client"\ndo = "exec"\nat = 0.3\nhost = "web1"\ntimeout = 90\ncommand = {client}\n\n'
            f'[[check]]\nkind = "recovered"\nstep = "client"\nafter = "f{len(faults) - 1}"\nwithin = {within}\n\n'
            '[[check]]\nkind = "exit"\nstep = "client"\n')


def run_client(tmp_path: pathlib.Path, path: str, program: str, args: str, script: str,
               faults: list[tuple[str, float, float]]):
    """Run the experiment of ``faults`` on ``path`` and the client ``program args`` (a
    shell line, where ``$0`` is ``script``); it must pass. Returns the report and the
    client's output."""
    (tmp_path / "topology.toml").write_text(TOPOLOGY)
    text = experiment(path, toml_list("sh", "-c", f"{CLEAN} {program} {args}", script), faults, within=10)
    (tmp_path / "x.toml").write_text(text)
    report = run(parse_experiment(text, str(tmp_path / "x.toml")), name=unique_name())
    output = report["exec"]["client"]["output"]
    assert report["passed"], (report["checks"], output)
    return report, output


def toml_list(*argv: str) -> str:
    return "[" + ", ".join(json.dumps(a) for a in argv) + "]"  # JSON's string escapes are TOML's too


def test_cloud_init_fetches_the_instance_document_through_429_500_and_a_stall(netsim_state_dir, tmp_path):
    cloud_init = installed(CLOUD_INIT, "Debian's cloud-init")
    _, output = run_client(tmp_path, "/metadata/instance", cloud_init, '-c "$0" "$(mktemp -d)"', CLOUD_INIT_FETCH,
                           [("http = 429", 0, 3), ("http = 500", 3, 3), ("hang = true", 6, 5)])
    lines = output.splitlines()
    assert any(ln.endswith(": 429") for ln in lines) and any(ln.endswith(": 500") for ln in lines), output
    assert any(ln.endswith(": ReadTimeout") for ln in lines), output  # the stall: cloud-init's 2 s timeout
    assert lines[-1].endswith("document of web1"), output


def test_azure_identity_gets_a_token_through_429_500_and_a_stall(netsim_state_dir, tmp_path):
    clients = installed(CLIENTS, "azure-identity")
    _, output = run_client(tmp_path, "/metadata/identity", clients, '-c "$0"', AZURE_IDENTITY,
                           [("http = 429", 0, 2), ("http = 500", 2, 2), ("hang = true", 4, 3)])
    statuses = [ln.split()[-1] for ln in output.splitlines() if ln.strip().startswith("Response status:")]
    assert "429" in statuses and "500" in statuses and statuses[-1] == "200", output
    assert output.rstrip().splitlines()[-1].endswith("characters"), output
