"""Real GCE clients, unmodified from PyPI, inside a VM of a gcp datacenter (needs root):
google-auth's ``_metadata.ping/get``, ``compute_engine.Credentials().refresh()`` and
``IDTokenCredentials``, and the long-poll loop of Google's own sample.

The clients live in their own virtual environment, ``.venv-clients`` (``scripts/setup``
makes it), never in netsim's; they reach the metadata server by its name
(``metadata.google.internal``), which resolves inside the VM only.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import time

import pytest

from tests.server.gcp.test_gcp_datacenter import NETSIM, TOPOLOGY
from tests.server.support import in_ci

pytestmark = pytest.mark.root

CLIENTS = pathlib.Path(__file__).resolve().parents[3] / ".venv-clients" / "bin" / "python"

GOOGLE_AUTH = """
import google.auth.transport.requests as transport
from google.auth.compute_engine import _metadata, credentials
request = transport.Request()
assert _metadata.ping(request), "ping failed"
print("name", _metadata.get(request, "instance/name"))
print("project", _metadata.get_project_id(request))
creds = credentials.Credentials()
creds.refresh(request)
print("token", creds.token[:5], creds.valid, creds.service_account_email)
ids = credentials.IDTokenCredentials(request, "https://service.example", use_metadata_identity_endpoint=True)
ids.refresh(request)
print("idtoken", ids.token.count("."), ids.expiry is not None)
"""

# python-docs-samples compute/metadata/main.py, wait_for_maintenance(), as published
# (its callback prints; it stops after the first event so the test ends).
DOCS_LOOP = """
import time
import requests
METADATA_URL = 'http://metadata.google.internal/computeMetadata/v1/'
METADATA_HEADERS = {'Metadata-Flavor': 'Google'}
def wait_for_maintenance(callback):
    url = METADATA_URL + 'instance/maintenance-event'
    last_maintenance_event = None
    last_etag = '0'
    while True:
        r = requests.get(url, params={'last_etag': last_etag, 'wait_for_change': True}, headers=METADATA_HEADERS)
        if r.status_code == 503:
            time.sleep(1)
            continue
        r.raise_for_status()
        last_etag = r.headers['etag']
        if r.text == 'NONE':
            maintenance_event = None
        else:
            maintenance_event = r.text
        if maintenance_event != last_maintenance_event:
            last_maintenance_event = maintenance_event
            if callback(maintenance_event):
                return
def callback(event):
    print(time.time(), event, flush=True)
    return event is not None
wait_for_maintenance(callback)
"""


@pytest.fixture
def clients() -> str:
    if not CLIENTS.exists():
        reason = f"{CLIENTS} is missing: run scripts/setup (it installs google-auth and requests there)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CLIENTS)


def env() -> dict[str, str]:
    # No proxy: the metadata server is reached directly, as on GCE. google-auth's own
    # timeout knob (3 s by default) is raised: a loaded CI machine must not fail the ping.
    return {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()}, "GCE_METADATA_TIMEOUT": "10"}


def test_google_auth_unmodified_inside_a_vm(datacenter_factory, clients) -> None:
    dc = datacenter_factory(TOPOLOGY)
    out = dc.run("web1", [clients, "-c", GOOGLE_AUTH], capture_output=True, text=True, timeout=60, env=env())
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["name"] == "web1" and lines["project"] == f"netsim-{dc.name}"
    assert lines["token"].startswith("ya29. True") and "-compute@developer.gserviceaccount.com" in lines["token"]
    assert lines["idtoken"] == "2 True"


def test_the_long_poll_loop_of_googles_docs_sees_a_migration(datacenter_factory, clients) -> None:
    dc = datacenter_factory(TOPOLOGY)
    proc = dc.popen("web2", [clients, "-c", DOCS_LOOP], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True, env=env())
    time.sleep(2.0)  # started and parked on its first long poll (the first answer is NONE: no event)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    added = time.time()
    subprocess.run([NETSIM, "event", "add", "web2", "--type", "MIGRATE_ON_HOST_MAINTENANCE", "--in", "5",
                    "--name", dc.name], check=True, capture_output=True, timeout=30)
    out, err = proc.communicate(timeout=30)
    when, event = out.split()[-2:]
    assert event == "MIGRATE_ON_HOST_MAINTENANCE", err
    assert float(when) - added < 2.0
