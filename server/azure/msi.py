"""Azure's managed identity endpoint, ``/metadata/identity`` (sans-IO: time is ``now``).

Facts from ``shared/reference/instance-metadata-trees.md`` section 1.2 (AZ-TOK, AZ-SPEC,
azure-identity and MSAL):

- ``GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=<uri>`` with
  ``Metadata: true``; optional, mutually exclusive ``client_id``, ``object_id``,
  ``msi_res_id`` pick a user-assigned identity (none: the system identity, or the only
  user-assigned one). ``bypass_cache=true`` (2023-07-01 Swagger) forces a fresh token.
- Success: every value a JSON string, in Azure's (alphabetical) order; a JWT v1.0 signed
  RS256 by the datacenter's key (:mod:`netsim_imds.signing`), ``exp - nbf = 86700``.
- Errors ``{"error": code, "error_description": text}``, all answered at once (a client
  retries 404, 410, 429 and 5xx, so "no identity" must be a 400).
- ``GET /metadata/identity/info`` answers ``{"tenantId": ...}``.

Tokens are cached per (VM, identity, resource), as IMDS does: a repeated request gets the
same token with a smaller ``expires_in``; a fresh one is signed once less than
:data:`REISSUE_BEFORE` seconds remain (the reference documents the caching, not the
threshold: five minutes is netsim's choice, the margin Azure's SDKs refresh within).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from netsim_imds.identity import ManagedIdentity, VmIdentity
from netsim_imds.response import Response, json_response
from netsim_imds.signing import Keys, b64url

LIFETIME = 86400
"""Seconds a token lives (``expires_in`` of a fresh token; observed, not documented)."""
NOT_BEFORE_SKEW = 300
"""``nbf`` is this much before ``iat``: captures show ``exp - nbf = 86700``."""
REISSUE_BEFORE = 300.0
"""A cached token is handed out again until fewer seconds than this remain."""
MAX_CACHED_PER_VM = 32
"""Tokens kept per VM (least recently used dropped first): a VM asking for endless resources
makes the server sign again, never grow."""
MAX_RESOURCE = 2048

IDENTITY_NOT_FOUND = "Identity not found"
MISSING_RESOURCE = "Required query variable 'resource' is missing"
MISSING_HEADER = "Required metadata header not specified"
SEVERAL_SELECTORS = "Only one of client_id, object_id or msi_res_id may be specified"
SEVERAL_IDENTITIES = ("Multiple user assigned identities exist, please specify the clientId / resourceId "
                      "of the identity in the token request")
UNKNOWN_RESOURCE = "AADSTS50001: The application named {} was not found in the tenant named {}."
TOO_MANY = "Too many requests. The limit is {} requests per second per VM"

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def identity_error(status: int, code: str, description: str,
                   headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """An error of the identity endpoint: ``{"error": code, "error_description": text}``."""
    return json_response(status, {"error": code, "error_description": description}, headers=headers)


def valid_resource(resource: str) -> bool:
    """Whether ``resource`` names an application as Entra ID could: an absolute URI with a
    host (``https://vault.azure.net``, ``api://app``) or an application id (a GUID)."""
    if not resource or len(resource) > MAX_RESOURCE or any(c.isspace() or ord(c) < 32 for c in resource):
        return False
    if _GUID.fullmatch(resource):
        return True
    try:
        parts = urlsplit(resource)
    except ValueError:
        return False
    return bool(parts.scheme) and bool(parts.netloc)


def choose(vm: VmIdentity, query: dict[str, str]) -> ManagedIdentity | Response:
    """The identity a token request names, or the 400 Azure answers."""
    identities = vm.azure.identities
    given = [(k, query[k]) for k in ("client_id", "object_id", "msi_res_id") if query.get(k)]
    if len(given) > 1:
        return identity_error(400, "invalid_request", SEVERAL_SELECTORS)
    if given:
        key, value = given[0]
        for ident in identities:
            have = {"client_id": ident.client_id, "object_id": ident.object_id,
                    "msi_res_id": ident.resource_id}[key]
            if have.lower() == value.lower():
                return ident
        return identity_error(400, "invalid_request", IDENTITY_NOT_FOUND)
    system = [i for i in identities if i.system]
    if system:
        return system[0]
    if len(identities) == 1:
        return identities[0]
    if identities:
        return identity_error(400, "invalid_request", SEVERAL_IDENTITIES)
    return identity_error(400, "invalid_request", IDENTITY_NOT_FOUND)


def xms_mirid(resource_id: str) -> str:
    """``xms_mirid``: the owner's ARM id with ``resourcegroups`` in lower case, as Azure writes it."""
    return re.sub("/resourceGroups/", "/resourcegroups/", resource_id, flags=re.IGNORECASE)


@dataclass(frozen=True)
class Token:
    """One issued access token."""

    access_token: str
    issued: int
    expires: int


def claims(vm: VmIdentity, ident: ManagedIdentity, resource: str, issued: int) -> dict:
    """The JWT claims of a managed identity token (v1.0, AZ-CLAIMS)."""
    tenant = vm.azure.tenant_id
    issuer = f"https://sts.windows.net/{tenant}/"
    digest = hashlib.sha256(f"{ident.object_id}|{resource}|{issued}".encode()).digest()
    return {"aud": resource, "iss": issuer, "iat": issued, "nbf": issued - NOT_BEFORE_SKEW,
            "exp": issued + LIFETIME, "aio": b64url(digest[:24]), "appid": ident.client_id, "appidacr": "2",
            "idp": issuer, "idtyp": "app", "oid": ident.object_id, "rh": b64url(digest[24:]) + ".",
            "sub": ident.object_id, "tid": tenant, "uti": b64url(digest[:16]), "ver": "1.0",
            "xms_mirid": xms_mirid(ident.resource_id)}


class TokenService:
    """Issues and caches the tokens of one node's VMs (part of that node's flavor)."""

    def __init__(self, keys: Callable[[], Keys]) -> None:
        self._keys = keys
        self._cache: dict[str, OrderedDict[tuple[str, str], Token]] = {}  # vm -> (client_id, resource) -> token
        self.signed = 0  # fresh tokens made (tests and the benchmark read it)

    def token(self, vm: VmIdentity, ident: ManagedIdentity, resource: str, now: float,
              bypass_cache: bool = False) -> Token:
        """A token for ``resource`` as ``ident``: the cached one while it has more than
        :data:`REISSUE_BEFORE` seconds left, else a freshly signed one."""
        per_vm = self._cache.setdefault(vm.name, OrderedDict())
        key = (ident.client_id, resource)
        cached = per_vm.get(key)
        if cached is not None and not bypass_cache and cached.expires - now > REISSUE_BEFORE \
                and cached.issued - NOT_BEFORE_SKEW <= now:
            per_vm.move_to_end(key)
            return cached
        issued = int(now)
        fresh = Token(self._keys().sign_jwt(claims(vm, ident, resource, issued)), issued, issued + LIFETIME)
        self.signed += 1
        per_vm[key] = fresh
        per_vm.move_to_end(key)
        while len(per_vm) > MAX_CACHED_PER_VM:
            per_vm.popitem(last=False)
        if len(self._cache) > 65536:  # more VMs than a node holds: forget, tokens are re-signed
            self._cache = {vm.name: per_vm}
        return fresh

    def answer(self, vm: VmIdentity, query: dict[str, str], now: float) -> Response:
        """``/metadata/identity/oauth2/token`` once the header, version and rate checks passed."""
        resource = query.get("resource", "")
        if not resource:
            return identity_error(400, "invalid_request", MISSING_RESOURCE)
        ident = choose(vm, query)
        if isinstance(ident, Response):
            return ident
        if not valid_resource(resource):
            return identity_error(400, "invalid_resource",
                                  UNKNOWN_RESOURCE.format(resource[:200], vm.azure.tenant_id))
        tok = self.token(vm, ident, resource, now, query.get("bypass_cache", "").lower() == "true")
        left = max(0, tok.expires - int(now))  # whole seconds, as issued
        return json_response(200, {
            "access_token": tok.access_token, "client_id": ident.client_id, "expires_in": str(left),
            "expires_on": str(tok.expires), "ext_expires_in": str(max(0, left - 1)),
            "not_before": str(tok.issued - NOT_BEFORE_SKEW), "resource": resource, "token_type": "Bearer",
        })
