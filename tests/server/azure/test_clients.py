"""Azure's identity, attested data and load balancer served by a real datacenter's daemon
to its VMs (needs root), and azure-identity, unmodified from PyPI, inside a VM.

The client lives in its own virtual environment, ``.venv-clients`` (``scripts/setup``
installs azure-identity there), never in netsim's. Tokens are checked against the JWKS the
daemon publishes in the state folder, attested documents with ``openssl smime -verify``
and the CA published there too.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess

import pytest

from tests.server.azure.test_identity import decode_jwt
from tests.server.support import installed

pytestmark = pytest.mark.root

CLIENTS = pathlib.Path(__file__).resolve().parents[3] / ".venv-clients" / "bin" / "python"
APP_CLIENT_ID = "6efac642-778b-45f2-9024-18aad5b7a673"
TOPOLOGY = f"""
[datacenter]
linklocal = "static"

[[node]]
name = "n1"

[[identity]]
name = "app"
client_id = "{APP_CLIENT_ID}"

[[availability_set]]
name = "web"

[[vm]]
name = "web1"
availability_set = "web"
identity = ["system", "app"]

[[vm]]
name = "web2"
availability_set = "web"

[[vm]]
name = "solo"
"""
BASE = "http://169.254.169.254/metadata/"

# azure-identity as a user writes it; the scope's /.default is stripped into resource=.
GET_TOKEN = """
import sys, time
from azure.identity import ManagedIdentityCredential, CredentialUnavailableError
kwargs = {"client_id": sys.argv[1]} if len(sys.argv) > 1 else {}
start = time.monotonic()
try:
    token = ManagedIdentityCredential(**kwargs).get_token("https://vault.azure.net/.default")
except CredentialUnavailableError as exc:
    print("unavailable", round(time.monotonic() - start, 3), str(exc).replace(chr(10), " "))
else:
    print("token", token.expires_on, token.token)
"""


@pytest.fixture
def clients() -> str:
    return installed(CLIENTS, "azure-identity there")


@pytest.fixture
def azure_dc(datacenter_factory):
    """A running azure datacenter: web1 with the system and a user-assigned identity, web2 and
    solo with none; web1 and web2 behind the load balancer (an availability set), solo not."""
    return datacenter_factory(TOPOLOGY)


def env() -> dict[str, str]:
    # No proxy: IMDS is reached directly, as Azure requires.
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith(("AZURE_", "MSI_",
                                                                                                   "IDENTITY_"))}


def curl_json(dc, vm: str, path: str, *extra: str) -> tuple[int, dict]:
    out = dc.run(vm, ["curl", "-s", "-m", "20", "-w", "\n%{http_code}", "-H", "Metadata: true", *extra, BASE + path],
                 capture_output=True, text=True, timeout=30).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


class _Keys:
    """The published JWKS, in the shape decode_jwt reads."""

    def __init__(self, path: str) -> None:
        with open(path) as f:
            self._jwks = json.load(f)

    def jwks(self) -> dict:
        return self._jwks


def test_azure_identity_gets_a_token_for_a_vm_with_an_identity(azure_dc, clients) -> None:
    out = azure_dc.run("web1", [clients, "-c", GET_TOKEN], capture_output=True, text=True, timeout=60, env=env())
    assert out.returncode == 0, out.stderr
    kind, _, token = out.stdout.split()  # expires_on: MSAL's own clock plus expires_in
    assert kind == "token"
    _, claims = decode_jwt(token, _Keys(azure_dc.state.file("jwks.json")))
    assert claims["aud"] == "https://vault.azure.net" and claims["exp"] - claims["iat"] == 86400
    assert claims["xms_mirid"].endswith("/providers/Microsoft.Compute/virtualMachines/web1")
    # a user-assigned identity, chosen by its client id
    out = azure_dc.run("web1", [clients, "-c", GET_TOKEN, APP_CLIENT_ID], capture_output=True, text=True,
                       timeout=60, env=env())
    _, claims = decode_jwt(out.stdout.split()[2], _Keys(azure_dc.state.file("jwks.json")))
    assert claims["appid"] == APP_CLIENT_ID
    assert claims["xms_mirid"].endswith("/Microsoft.ManagedIdentity/userAssignedIdentities/app")


def test_azure_identity_gives_up_at_once_without_an_identity(azure_dc, clients) -> None:
    out = azure_dc.run("web2", [clients, "-c", GET_TOKEN], capture_output=True, text=True, timeout=60, env=env())
    assert out.returncode == 0, out.stderr
    kind, elapsed, reason = out.stdout.split(" ", 2)
    # CredentialUnavailableError is what a 400 gives at once; a 404 would be retried for ~24 s first.
    assert kind == "unavailable" and "identity" in reason.lower(), out.stdout
    print(f"no identity: azure-identity gave up after {elapsed} s")


def test_identity_endpoint_from_a_vm(azure_dc) -> None:
    token = "identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
    status, body = curl_json(azure_dc, "web1", token)
    assert status == 200 and body["resource"] == "https://management.azure.com/" and body["expires_in"] == "86400"
    again = curl_json(azure_dc, "web1", token)[1]
    assert again["access_token"] == body["access_token"]  # cached
    assert curl_json(azure_dc, "web2", token) == (400, {"error": "invalid_request",
                                                        "error_description": "Identity not found"})
    status, body = curl_json(azure_dc, "web1", "identity/oauth2/token?api-version=2018-02-01")
    assert status == 400 and "resource" in body["error_description"]
    # the server keeps serving after the bad requests
    assert curl_json(azure_dc, "web1", token)[0] == 200


def test_attested_document_verifies_with_openssl_and_the_ca(azure_dc, tmp_path) -> None:
    status, body = curl_json(azure_dc, "web1", "attested/document?api-version=2021-02-01&nonce=1234566766")
    assert status == 200 and body["encoding"] == "pkcs7"
    (tmp_path / "sig.der").write_bytes(base64.b64decode(body["signature"]))
    out = subprocess.run(["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "sig.der"),
                          "-CAfile", azure_dc.state.file("ca.pem")], capture_output=True, timeout=30)
    assert out.returncode == 0 and b"Verification successful" in out.stderr, out.stderr
    doc = json.loads(out.stdout)
    instance = curl_json(azure_dc, "web1", "instance/compute?api-version=2021-02-01")[1]
    assert doc["nonce"] == "1234566766" and doc["vmId"] == instance["vmId"]


def test_load_balancer_metadata(azure_dc) -> None:
    status, body = curl_json(azure_dc, "web2", "loadbalancer?api-version=2020-10-01")
    address = azure_dc.routable_address("web2")
    assert status == 200 and body["loadbalancer"]["inboundRules"] == [
        {"frontendIpAddress": "198.19.255.100", "protocol": "tcp", "frontendPort": 80, "backendPort": 8080,
         "privateIpAddress": address}]
    assert curl_json(azure_dc, "solo", "loadbalancer?api-version=2020-10-01")[0] == 404
