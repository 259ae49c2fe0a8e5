"""Azure's attested data (``/metadata/attested/document``) and load balancer metadata
(``/metadata/loadbalancer``), pure functions of the VM, the query and ``now``.

Facts from ``shared/reference/instance-metadata-trees.md`` sections 1.3 and 1.4:

- attested: ``{"encoding": "pkcs7", "signature": "<base64 DER>"}``, a PKCS#7 SignedData
  that *embeds* the JSON (``nonce``, ``plan``, ``timeStamp{createdOn,expiresOn}`` in
  ``MM/dd/yy HH:mm:ss -0000``, ``vmId``; ``subscriptionId`` since 2019-04-30, ``sku`` since
  2019-11-01, ``licenseType`` since 2020-09-01 and only when set), SHA-256 with RSA, no
  signed attributes, signed here by the datacenter's certificate under its netsim CA
  (:mod:`netsim_imds.signing`). ``nonce`` is optional ("if no value is provided, IMDS uses
  the current UTC timestamp", as ``20201130-211924``); the Swagger allows up to 32 letters
  and digits. The validity is the documentation sample's: 45 seconds.
- load balancer: the public addresses, inbound and outbound rules of the (Standard SKU)
  load balancer the VM is a backend of; 404 with Azure's text for a VM behind none.
"""

from __future__ import annotations

import base64
import json
import re
import time

from netsim_imds.azure.versions import ATTESTED_FIELD_SINCE
from netsim_imds.identity import VmIdentity
from netsim_imds.signing import Keys

VALIDITY = 45
"""Seconds between ``createdOn`` and ``expiresOn`` (the documentation's sample)."""
MAX_NONCE = 32
BAD_NONCE = f"Bad request. nonce must be 1 to {MAX_NONCE} letters or digits"
NO_LOAD_BALANCER = ("No load balancer metadata is found. Check if your virtual machine is using any "
                    "nonbasic SKU load balancer and retry later.")

_NONCE = re.compile(rf"[A-Za-z0-9-]{{1,{MAX_NONCE}}}")


def stamp(ts: float) -> str:
    """``11/20/18 22:07:39 -0000``: the timeStamp format of attested data (UTC)."""
    return time.strftime("%m/%d/%y %H:%M:%S -0000", time.gmtime(ts))


def default_nonce(now: float) -> str:
    """The nonce IMDS uses when none is given: the UTC time, ``20201130-211924``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))


def valid_nonce(nonce: str) -> bool:
    """Whether ``nonce`` may be signed (letters, digits and the default's dash, at most 32)."""
    return bool(_NONCE.fullmatch(nonce))


def document(vm: VmIdentity, nonce: str, version: str, now: float) -> dict:
    """The JSON that the signature embeds, with the fields ``version`` carries."""
    name, product, publisher = vm.azure.plan
    doc = {
        "licenseType": vm.azure.license_type,
        "nonce": nonce,
        "plan": {"name": name, "product": product, "publisher": publisher},
        "sku": vm.sku,
        "subscriptionId": vm.subscription_id,
        "timeStamp": {"createdOn": stamp(now), "expiresOn": stamp(now + VALIDITY)},
        "vmId": vm.vm_id,
    }
    if not vm.azure.license_type:  # Azure Hybrid Benefit only
        del doc["licenseType"]
    return {k: v for k, v in doc.items() if ATTESTED_FIELD_SINCE[k] <= version}


def signed(vm: VmIdentity, keys: Keys, nonce: str, version: str, now: float) -> dict:
    """The ``/metadata/attested/document`` answer: the document signed as PKCS#7, base64."""
    content = json.dumps(document(vm, nonce, version, now), separators=(",", ":")).encode()
    return {"encoding": "pkcs7", "signature": base64.b64encode(keys.sign_pkcs7(content)).decode()}


def load_balancer(vm: VmIdentity) -> dict | None:
    """The ``/metadata/loadbalancer`` document of ``vm`` (None: it is behind no load balancer)."""
    if vm.azure.load_balancer is None or not vm.address:
        return None
    vip, frontend_port, backend_port = vm.azure.load_balancer
    # Ports are numbers in Azure's sample, against the all-strings rule of the other documents.
    return {"loadbalancer": {
        "publicIpAddresses": [{"frontendIpAddress": vip, "privateIpAddress": vm.address}],
        "inboundRules": [{"frontendIpAddress": vip, "protocol": "tcp", "frontendPort": frontend_port,
                          "backendPort": backend_port, "privateIpAddress": vm.address}],
        "outboundRules": [{"frontendIpAddress": vip, "privateIpAddress": vm.address}],
    }}
