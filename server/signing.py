"""A datacenter's signing keys, cloud-neutral: JWTs (RS256), a JWKS, PKCS#7 signatures.

A cloud signs what its metadata service hands out: Azure's managed identity tokens (JWT,
RS256) and attested documents (PKCS#7 SignedData), GCE's identity tokens (JWT, RS256).
netsim gives each datacenter one RSA key and a certificate for it, issued by a netsim CA
made for that datacenter, so that a service under test can check what a VM shows it:

=====================  ==============================================================
file (state folder)    what
=====================  ==============================================================
``ca.pem``             the datacenter's CA certificate (trust anchor for PKCS#7)
``ca-key.pem``         its key (mode 600; only used to issue ``signer.pem``)
``signer.pem``         the signing certificate (CN ``metadata.netsim``), issued by the CA
``signer-key.pem``     the signing key (RSA 2048, mode 600)
``jwks.json``          the signing key's public half as a JWKS (``kid`` = ``x5t``)
=====================  ==============================================================

:func:`load_or_create` makes them once (the daemon's first start) and loads them after;
:func:`bind` hands them to a flavor whose factory takes ``keys=``. Signing is pure (no
clock: callers put times in the claims). This module imports nothing from netsim.
"""

from __future__ import annotations

import base64
import datetime
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from netsim_imds.errors import NetsimError

CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
CERT_FILE, KEY_FILE = "signer.pem", "signer-key.pem"
JWKS_FILE = "jwks.json"
SIGNER_NAME = "metadata.netsim"
VALIDITY = datetime.timedelta(days=3650)


class SigningError(NetsimError):
    """The datacenter's keys cannot be read or made (names the file and the fix)."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64url(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class Keys:
    """One datacenter's signing key, its certificate and the CA that issued it."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    ca: x509.Certificate

    @property
    def kid(self) -> str:
        """The key id tokens name: the certificate's SHA-1 thumbprint, base64url (``x5t``)."""
        return b64url(self.certificate.fingerprint(hashes.SHA1()))

    def jwks(self) -> dict:
        """The public half as a JSON Web Key Set (RFC 7517), with the certificate in ``x5c``."""
        pub = self.key.public_key().public_numbers()
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "x5t": self.kid,
                          "n": _int_b64url(pub.n), "e": _int_b64url(pub.e),
                          "x5c": [base64.b64encode(der).decode()]}]}

    def sign_jwt(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """A compact JWS (RS256) of ``claims``; the header carries ``kid`` and ``x5t``."""
        head = {"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid, **(header or {})}
        signing_input = (b64url(json.dumps(head, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def sign_pkcs7(self, content: bytes) -> bytes:
        """PKCS#7 SignedData (DER) embedding ``content``, SHA-256 with RSA, the signer's
        certificate included and no signed attributes (the shape of Azure's attested data)."""
        builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(self.certificate, self.key,
                                                                              hashes.SHA256())
        return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.NoAttributes,
                                                         pkcs7.PKCS7Options.Binary])


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netsim"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create(label: str, now: datetime.datetime) -> tuple[Keys, rsa.RSAPrivateKey]:
    """New keys for datacenter ``label``: a CA (its key returned too) and a signer it issued."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name(f"netsim CA {label}")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(_name(SIGNER_NAME)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                                  x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SIGNER_NAME),
                                                        x509.DNSName(f"*.{SIGNER_NAME}")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Keys(key, cert, ca), ca_key


def _write(path: str, data: bytes, private: bool) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one, never half


def load_or_create(folder: str, label: str = "", now: datetime.datetime | None = None) -> Keys:
    """The keys kept in ``folder``, made there first if it holds none (see the module's table)."""
    paths = {name: os.path.join(folder, name) for name in (CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE, JWKS_FILE)}
    if not os.path.exists(paths[KEY_FILE]):
        keys, ca_key = create(label or os.path.basename(folder.rstrip("/")),
                              now or datetime.datetime.now(datetime.timezone.utc))
        _write(paths[CA_KEY_FILE], _key_pem(ca_key), True)
        _write(paths[CA_FILE], _pem(keys.ca), False)
        _write(paths[CERT_FILE], _pem(keys.certificate), False)
        _write(paths[JWKS_FILE], json.dumps(keys.jwks(), indent=2).encode() + b"\n", False)
        _write(paths[KEY_FILE], _key_pem(keys.key), True)  # last: its presence means "all made"
        return keys
    try:
        with open(paths[KEY_FILE], "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        with open(paths[CERT_FILE], "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(paths[CA_FILE], "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as exc:
        raise SigningError(f"cannot load the signing keys in {folder}: {exc}; remove {KEY_FILE} there to "
                           "make new ones (tokens signed before will no longer verify)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningError(f"{paths[KEY_FILE]} is not an RSA key; remove it to make new keys")
    return Keys(key, cert, ca)


def bind(factory: Callable[..., Any], keys: Keys) -> Callable[[], Any]:
    """``factory`` with ``keys=keys`` when it takes that keyword (a flavor that signs), else
    ``factory`` itself: the daemon hands its keys to any flavor without naming one."""
    try:
        takes = "keys" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes = False
    return (lambda: factory(keys=keys)) if takes else factory

