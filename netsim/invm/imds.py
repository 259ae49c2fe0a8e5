"""A small metadata-service client for programs that run inside a VM (standard library).

Both APIs of ``shared/reference/cloud-metadata-apis.md``: the 2015 one (section 1, no
header) and Azure's current one (section 2: ``Metadata: true``, ``api-version``,
POST StartRequests to approve). Each call opens one connection with ``http.client``
and bypasses any proxy, as Azure requires.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Callable

from netsim_imds.address import METADATA_ADDRESS

SCHEDULED_EVENTS_VERSION = "2020-07-01"
INSTANCE_VERSION = "2021-02-01"


class ImdsError(Exception):
    """The metadata service did not answer, or answered with an error status.

    ``status`` is the HTTP status (None when there was no answer), ``retry_after`` the
    seconds a 429 asks to wait.
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class Imds:
    """The metadata service at ``address`` (default 169.254.169.254, port 80)."""

    def __init__(self, address: str = METADATA_ADDRESS, port: int = 80, timeout: float = 5.0) -> None:
        self.address, self.port, self.timeout = address, port, timeout

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """One request; returns (status, body, lower-cased headers). ImdsError if unreachable."""
        conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            raise ImdsError(f"{method} http://{self.address}{path}: {exc}") from None
        finally:
            conn.close()

    def _checked(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> bytes:
        status, data, hdrs = self.request(method, path, body, headers)
        if status != 200:
            retry = None
            if status == 429:
                try:
                    retry = float(hdrs.get("retry-after", "1"))
                except ValueError:
                    retry = 1.0
            raise ImdsError(f"{method} {path}: HTTP {status} {data[:200]!r}", status, retry)
        return data

    # -- 2015 API ---------------------------------------------------------------------

    def maintenance(self) -> dict:
        """``/metadata/v1/maintenance``: ``{}`` or ``{"EventID": ..., "EventCreationTime": ...}``."""
        return json.loads(self._checked("GET", "/metadata/v1/maintenance") or b"{}")

    def instance_info(self) -> dict:
        """``/metadata/v1/InstanceInfo``: ``{"ID": name, "UD": "n", "FD": "n"}``."""
        return json.loads(self._checked("GET", "/metadata/v1/InstanceInfo"))

    # -- current API ------------------------------------------------------------------

    def vm_name(self) -> str:
        """This VM's name (``/metadata/instance/compute/name``, format=text)."""
        path = f"/metadata/instance/compute/name?api-version={INSTANCE_VERSION}&format=text"
        return self._checked("GET", path, headers={"Metadata": "true"}).decode().strip()

    def scheduled_events(self) -> dict:
        """The Scheduled Events document: ``{"DocumentIncarnation": n, "Events": [...]}``."""
        path = f"/metadata/scheduledevents?api-version={SCHEDULED_EVENTS_VERSION}"
        return json.loads(self._checked("GET", path, headers={"Metadata": "true"}))

    def approve(self, event_ids: list[str]) -> None:
        """POST StartRequests for ``event_ids`` (section 2.4): the VM is ready for them."""
        path = f"/metadata/scheduledevents?api-version={SCHEDULED_EVENTS_VERSION}"
        body = json.dumps({"StartRequests": [{"EventId": i} for i in event_ids]}).encode()
        self._checked("POST", path, body, headers={"Metadata": "true", "Content-Type": "application/json"})


def retrying(call, attempts: int = 5, sleep=time.sleep):
    """Run ``call()``; on a 429 wait what Retry-After says and try again (at most ``attempts``)."""
    for i in range(attempts):
        try:
            return call()
        except ImdsError as exc:
            if exc.status != 429 or i == attempts - 1:
                raise
            sleep(min(exc.retry_after or 1.0, 5.0))
    raise AssertionError("unreachable")


def start_in_vm(program: str, vm: str | None = None, metadata: str = METADATA_ADDRESS,
                name_of: Callable[["Imds"], str] = lambda imds: imds.vm_name()) -> tuple["Imds", str]:
    """What every in-VM program does first: refuse to run outside a netsim namespace
    (:func:`~netsim.kernel.safety.require_emulated_namespace`), then learn this VM's name
    with ``name_of`` (default: the current API's compute name), waiting while the VM boots,
    unless ``vm`` names it. Returns the metadata client and the name; ImdsError if the
    metadata service never answers."""
    from netsim.kernel.safety import require_emulated_namespace  # touches /run/netns: only in programs
    require_emulated_namespace(program)
    imds = Imds(metadata)
    return imds, vm or patiently(lambda: name_of(imds))


def patiently(call, timeout: float = 60.0, interval: float = 0.5, clock=time.monotonic, sleep=time.sleep):
    """Run ``call()`` until it succeeds or ``timeout`` seconds pass (then its ImdsError).

    For start-up after a boot: the VM may not have claimed its link-local address yet,
    so the metadata service is unreachable for a moment (RFC 3927 probing).
    """
    deadline = clock() + timeout
    while True:
        try:
            return call()
        except ImdsError as exc:
            if clock() + interval > deadline:
                raise
            sleep(min(exc.retry_after or interval, 5.0))
