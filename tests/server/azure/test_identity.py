"""Managed identity tokens, attested data and the load balancer endpoint, on invented
timelines (no sockets, no clock): Azure's JSON, its 400s, caching, the identity rate limit,
a JWT that verifies with the published JWKS, a PKCS#7 signature that verifies with the CA."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from netsim_imds import signing
from netsim_imds.azure import msi
from netsim_imds.azure.api import AzureConfig, AzureFlavor
from netsim_imds.identity import AzureProfile, ManagedIdentity

from tests.server.azure.test_api import T0, call
from tests.server.support import VM_ID, make_vm

TOKEN = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SYSTEM = ManagedIdentity("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
                         "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1", True)
APP = ManagedIdentity("33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444",
                      "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app")
OTHER = ManagedIdentity("55555555-5555-4555-8555-555555555555", "66666666-6666-4666-8666-666666666666",
                        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/b")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> signing.Keys:
    """One datacenter's keys, made in a folder as the daemon makes them."""
    return signing.load_or_create(str(tmp_path_factory.mktemp("keys")), "test")


@pytest.fixture
def api(keys) -> AzureFlavor:
    return AzureFlavor(AzureConfig(rate_limit=None, identity_rate_limit=None), keys=keys)


def vm(*identities: ManagedIdentity, **kw):
    return make_vm("vm1", azure=AzureProfile(tenant_id=TENANT, identities=identities, **kw))


def decode_jwt(token: str, keys: signing.Keys) -> tuple[dict, dict]:
    """Header and claims of ``token``, its RS256 signature checked with the JWKS's key."""
    head, body, sig = token.split(".")
    pad = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
    jwk = keys.jwks()["keys"][0]
    public = rsa.RSAPublicNumbers(int.from_bytes(pad(jwk["e"]), "big"), int.from_bytes(pad(jwk["n"]), "big"))
    public.public_key().verify(pad(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    header = json.loads(pad(head))
    assert header["kid"] == jwk["kid"] and header["alg"] == "RS256"
    return header, json.loads(pad(body))


# -- tokens --------------------------------------------------------------------------------

def test_token_has_azures_shape_and_verifies(api, keys) -> None:
    resp, body = call(api, TOKEN, caller=vm(SYSTEM))
    assert resp.status == 200
    assert list(body) == ["access_token", "client_id", "expires_in", "expires_on", "ext_expires_in",
                          "not_before", "resource", "token_type"]
    assert all(isinstance(v, str) for v in body.values())
    assert (body["client_id"], body["expires_in"], body["resource"], body["token_type"]) == \
           (SYSTEM.client_id, "86400", "https://vault.azure.net", "Bearer")
    assert int(body["expires_on"]) - int(body["not_before"]) == 86700
    _, claims = decode_jwt(body["access_token"], keys)
    assert claims["aud"] == "https://vault.azure.net" and claims["tid"] == TENANT
    assert claims["oid"] == claims["sub"] == SYSTEM.object_id and claims["appid"] == SYSTEM.client_id
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (int(T0), int(T0) - 300, int(T0) + 86400)
    assert claims["xms_mirid"] == SYSTEM.resource_id.replace("resourceGroups", "resourcegroups")


def test_a_token_is_cached_then_reissued(api) -> None:
    caller = vm(SYSTEM)
    first = call(api, TOKEN, caller=caller)[1]
    later = call(api, TOKEN, caller=caller, now=T0 + 3600)[1]
    assert later["access_token"] == first["access_token"] and later["expires_in"] == str(86400 - 3600)
    assert later["expires_on"] == first["expires_on"] and api.tokens.signed == 1
    other = call(api, TOKEN.replace("vault.azure.net", "storage.azure.com"), caller=caller, now=T0 + 3600)[1]
    assert other["access_token"] != first["access_token"] and api.tokens.signed == 2
    near_end = call(api, TOKEN, caller=caller, now=T0 + 86400 - msi.REISSUE_BEFORE + 1)[1]
    assert near_end["access_token"] != first["access_token"] and near_end["expires_in"] == "86400"
    forced = call(api, TOKEN + "&bypass_cache=true", caller=caller, now=T0 + 86400)[1]
    assert forced["access_token"] != near_end["access_token"]


@pytest.mark.parametrize("query, chosen", [
    ("", SYSTEM), (f"&client_id={APP.client_id}", APP), (f"&object_id={APP.object_id}", APP),
    (f"&msi_res_id={APP.resource_id.lower()}", APP), (f"&client_id={SYSTEM.client_id.upper()}", SYSTEM),
])
def test_choosing_an_identity(api, keys, query, chosen) -> None:
    resp, body = call(api, TOKEN + query, caller=vm(SYSTEM, APP))
    assert resp.status == 200 and body["client_id"] == chosen.client_id
    assert decode_jwt(body["access_token"], keys)[1]["oid"] == chosen.object_id


def test_the_only_user_identity_is_the_default(api) -> None:
    assert call(api, TOKEN, caller=vm(APP))[1]["client_id"] == APP.client_id


@pytest.mark.parametrize("identities, target, status, error, description", [
    ((), TOKEN, 400, "invalid_request", msi.IDENTITY_NOT_FOUND),
    ((SYSTEM,), TOKEN + f"&client_id={APP.client_id}", 400, "invalid_request", msi.IDENTITY_NOT_FOUND),
    ((SYSTEM,), TOKEN + "&msi_res_id=/subscriptions/x", 400, "invalid_request", msi.IDENTITY_NOT_FOUND),
    ((APP, OTHER), TOKEN, 400, "invalid_request", msi.SEVERAL_IDENTITIES),
    ((SYSTEM,), TOKEN + f"&client_id={SYSTEM.client_id}&object_id={SYSTEM.object_id}", 400, "invalid_request",
     msi.SEVERAL_SELECTORS),
    ((SYSTEM,), "/metadata/identity/oauth2/token?api-version=2018-02-01", 400, "invalid_request",
     msi.MISSING_RESOURCE),
    ((SYSTEM,), "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=not%20a%20uri", 400,
     "invalid_resource", None),
    ((SYSTEM,), "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=vault", 400,
     "invalid_resource", None),
])
def test_azures_400s(api, identities, target, status, error, description) -> None:
    resp, body = call(api, target, caller=vm(*identities))
    assert resp.status == status and body["error"] == error and set(body) == {"error", "error_description"}
    if description:
        assert body["error_description"] == description


def test_no_identity_body_is_azures_68_bytes(api) -> None:
    assert call(api, TOKEN, caller=vm())[0].body == \
        b'{"error":"invalid_request","error_description":"Identity not found"}'


def test_header_and_version_rules(api) -> None:
    resp, body = call(api, TOKEN, caller=vm(SYSTEM), headers="")
    assert resp.status == 400 and body == {"error": "invalid_request", "error_description": msi.MISSING_HEADER}
    assert call(api, TOKEN.replace("2018-02-01", "2017-12-01"), caller=vm(SYSTEM))[0].status == 400
    assert call(api, TOKEN, caller=vm(SYSTEM), method="POST")[0].status == 405
    assert call(api, "/metadata/identity?api-version=2018-02-01", caller=vm(SYSTEM))[1] == {"error": "Not Found"}
    info = call(api, "/metadata/identity/info?api-version=2018-02-01", caller=vm(SYSTEM))[1]
    assert info == {"tenantId": TENANT}


def test_identity_has_its_own_rate_limit(keys) -> None:
    api = AzureFlavor(AzureConfig(), keys=keys)  # Azure's limits: 5 per second, 20 for identity
    caller = vm(SYSTEM)
    statuses = [call(api, TOKEN, caller=caller, now=T0)[0].status for _ in range(21)]
    assert statuses == [200] * 20 + [429]
    resp, body = call(api, TOKEN, caller=caller, now=T0)
    assert body["error"] == "too_many_requests" and ("Retry-After", "1") in resp.headers
    # the other categories keep their own budget of 5
    assert call(api, "/metadata/instance?api-version=2021-02-01", caller=caller, now=T0)[0].status == 200
    assert call(api, TOKEN, caller=caller, now=T0 + 1)[0].status == 200


def test_many_resources_stay_bounded(api) -> None:
    caller = vm(SYSTEM)
    for i in range(msi.MAX_CACHED_PER_VM * 3):
        assert call(api, TOKEN.replace("vault.azure.net", f"r{i}.example"), caller=caller)[0].status == 200
    assert len(api.tokens._cache["vm1"]) == msi.MAX_CACHED_PER_VM


# -- attested data -------------------------------------------------------------------------

def _verify(signature_b64: str, keys: signing.Keys, tmp_path) -> dict:
    """The signed JSON, as ``openssl smime -verify`` with the datacenter's CA gives it."""
    (tmp_path / "sig.der").write_bytes(base64.b64decode(signature_b64))
    (tmp_path / "ca.pem").write_bytes(keys.ca.public_bytes(Encoding.PEM))
    out = subprocess.run(["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "sig.der"),
                          "-CAfile", str(tmp_path / "ca.pem")], capture_output=True, check=True, timeout=30)
    assert b"Verification successful" in out.stderr
    return json.loads(out.stdout)


def test_attested_document_verifies_with_the_ca(api, keys, tmp_path) -> None:
    resp, body = call(api, "/metadata/attested/document?api-version=2021-02-01&nonce=1234566766", caller=vm())
    assert resp.status == 200 and body["encoding"] == "pkcs7"
    doc = _verify(body["signature"], keys, tmp_path)
    assert doc == {"nonce": "1234566766", "plan": {"name": "", "product": "", "publisher": ""},
                   "sku": "22_04-lts-gen2", "subscriptionId": "00000000-0000-0000-0000-000000000000",
                   "timeStamp": {"createdOn": "09/15/15 06:42:51 -0000", "expiresOn": "09/15/15 06:43:36 -0000"},
                   "vmId": VM_ID}


def test_attested_fields_follow_the_version(api, keys, tmp_path) -> None:
    body = call(api, "/metadata/attested/document?api-version=2018-10-01", caller=vm(license_type="RHEL_BYOS"))[1]
    doc = _verify(body["signature"], keys, tmp_path)
    assert set(doc) == {"nonce", "plan", "timeStamp", "vmId"} and doc["nonce"] == "20150915-064251"
    body = call(api, "/metadata/attested/document?api-version=2021-02-01", caller=vm(license_type="RHEL_BYOS"))[1]
    assert _verify(body["signature"], keys, tmp_path)["licenseType"] == "RHEL_BYOS"


@pytest.mark.parametrize("target, status", [
    ("/metadata/attested/document?api-version=2018-04-02", 400),
    ("/metadata/attested/document?api-version=2021-02-01&nonce=" + "1" * 33, 400),
    ("/metadata/attested/document?api-version=2021-02-01&nonce=a%20b", 400),
    ("/metadata/attested?api-version=2021-02-01", 404),
    ("/metadata/attested/document/x?api-version=2021-02-01", 404),
])
def test_attested_bad_requests(api, target, status) -> None:
    resp, body = call(api, target, caller=vm())
    assert resp.status == status and "error" in body


# -- load balancer -------------------------------------------------------------------------

def test_load_balancer_for_a_backend(api) -> None:
    caller = vm(load_balancer=("198.19.255.100", 80, 8080))
    resp, body = call(api, "/metadata/loadbalancer?api-version=2020-10-01", caller=caller)
    assert resp.status == 200
    assert body == {"loadbalancer": {
        "publicIpAddresses": [{"frontendIpAddress": "198.19.255.100", "privateIpAddress": "198.18.1.5"}],
        "inboundRules": [{"frontendIpAddress": "198.19.255.100", "protocol": "tcp", "frontendPort": 80,
                          "backendPort": 8080, "privateIpAddress": "198.18.1.5"}],
        "outboundRules": [{"frontendIpAddress": "198.19.255.100", "privateIpAddress": "198.18.1.5"}]}}
    assert call(api, "/metadata/loadbalancer?api-version=2020-09-01", caller=caller)[0].status == 400


def test_no_load_balancer_is_404(api) -> None:
    resp, body = call(api, "/metadata/loadbalancer?api-version=2020-10-01", caller=vm())
    assert resp.status == 404 and body["error"].startswith("No load balancer metadata is found")


# -- keys ----------------------------------------------------------------------------------

def test_keys_are_made_once_and_published(tmp_path) -> None:
    first = signing.load_or_create(str(tmp_path), "dc")
    again = signing.load_or_create(str(tmp_path), "dc")
    assert again.kid == first.kid
    assert json.loads((tmp_path / signing.JWKS_FILE).read_text()) == first.jwks()
    assert (tmp_path / signing.KEY_FILE).stat().st_mode & 0o077 == 0
    (tmp_path / signing.CERT_FILE).write_text("garbage")
    with pytest.raises(signing.SigningError, match="remove signer-key.pem"):
        signing.load_or_create(str(tmp_path))


def test_bind_hands_keys_only_to_a_factory_that_takes_them(keys) -> None:
    assert signing.bind(AzureFlavor, keys)()._keys is keys
    plain = lambda: "flavor"  # noqa: E731
    assert signing.bind(plain, keys) is plain
