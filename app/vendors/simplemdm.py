"""SimpleMDM: every enrolled device of an account from ``GET /api/v1/devices``.

Tailscale has no SimpleMDM integration (tailscale/tailscale#20617, opened 2026-07-26, open), so the keys are
ours, in the style of Tailscale's native MDM ones (``jamfPro:supervised``, ``jamfPro:firewallEnabled``,
``jamfPro:SIPEnabled``: ``<vendor>:<camelCaseName>``, booleans as booleans). On the built-in tailnet they are
written as below; on a real tailnet they become ``custom:simplemdm_<name>`` (``app.vendors.mapping``):

=============================== ============================================ =======================================
key                             type / values                                from (``data[].attributes``)
=============================== ============================================ =======================================
``simplemdm:present``           ``true``                                     every device listed
``simplemdm:status``            enrolled, awaiting_enrollment, unenrolled    ``status``, spaces → ``_``
``simplemdm:supervised``        boolean                                      ``is_supervised``
``simplemdm:fileVaultEnabled``  boolean                                      ``filevault_enabled``
``simplemdm:firewallEnabled``   boolean                                      ``firewall.enabled``
``simplemdm:SIPEnabled``        boolean                                      ``system_integrity_protection_enabled``
``simplemdm:passcodeCompliant`` boolean                                      ``passcode_compliant``
``simplemdm:depEnrolled``       boolean                                      ``is_dep_enrollment``
=============================== ============================================ =======================================

SimpleMDM sends ``null`` for what a device has not reported (an iPhone has no firewall or SIP, a new Mac no
FileVault state yet): such an attribute is left unset, never written as ``false``. ``Agent.mac_addresses``
holds ``wifi_mac`` and ``ethernet_macs`` (12 lowercase hex digits; the Bluetooth MAC is not a network
address and is not used). ``last_seen_at`` is ``Agent.last_seen``; freshness is the framework's
``max_agent_age``, not a key of this vendor.

Facts and where they come from (SimpleMDM API reference, simplemdm.com/docs/api, stored copy read for this
module; the sample device in ``VENDORS-MORE.md`` §8):

- Auth: HTTP Basic with the API key as the user name and an empty password; HTTPS only. Errors are
  ``{"errors": [{"title": ...}]}``.
- Paging: ``limit`` 1-100 (default 10) and ``starting_after`` = the id of the last object of the previous
  page; the answer says ``has_more``. The client asks for 100 and follows the last id while ``has_more``.
- ``GET /api/v1/devices`` lists ``{"type": "device", "id": <int>, "attributes": {...}}``; devices awaiting
  enrollment are left out unless ``include_awaiting_enrollment=true``. They have no serial, MAC or posture
  yet, so the client does not ask for them (``simplemdm:status`` therefore reads ``enrolled`` in practice).
  The reference shows ``status`` values ``enrolled`` and ``awaiting enrollment``; ``unenrolled`` is
  UNVERIFIED. Any other status is written as SimpleMDM spells it, spaces turned into ``_``.
- Rate limit: ~60 requests a minute per account according to a third-party README (hov172/SimpleMDM-MCP),
  not in SimpleMDM's reference (UNVERIFIED). The client does not limit itself (50,000 devices are 500
  requests; a wrong guess would make every sync slower than needed) and relies on the shared retry policy: a
  429 waits out its ``Retry-After``, or backs off from 5 s when there is none.
"""

from __future__ import annotations

import base64
import functools
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx

from app.tailnet.models import AttributeValue
from app.vendors._fields import checked_macs, optional_bool, optional_str
from app.vendors._http import (
    VENDOR_RETRY,
    Monotonic,
    OwnedClient,
    Page,
    RetryPolicy,
    Sleep,
    SlidingWindowLimiter,
    api_base_url,
    collect_agents,
    page_items,
    parse_timestamp,
    sync_and_verify_http,
    verified_count,
)
from app.vendors.base import (
    VERIFY_PAGE_SIZE,
    Agent,
    CredentialField,
    KnownAttribute,
    Progress,
    VendorDataError,
    VendorSpec,
)

log = logging.getLogger(__name__)

VENDOR = "simplemdm"
LABEL = "SimpleMDM"
NAMESPACE = "simplemdm"
DEFAULT_BASE_URL = "https://a.simplemdm.com"
DEVICES_PATH = "/api/v1/devices"
PAGE_SIZE = 100
MAX_PAGES = 10_000
STATUSES = ("enrolled", "awaiting_enrollment", "unenrolled")
# A 429 without Retry-After: start the backoff where a per-minute limit can have moved.
RETRY_POLICY = replace(VENDOR_RETRY, rate_limited_base=5.0)

# attribute name → device attribute, for the plain booleans
BOOLEAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("supervised", "is_supervised"),
    ("fileVaultEnabled", "filevault_enabled"),
    ("SIPEnabled", "system_integrity_protection_enabled"),
    ("passcodeCompliant", "passcode_compliant"),
    ("depEnrolled", "is_dep_enrollment"),
)


def normalize_base_url(url: str | None) -> str:
    """``https://host`` without a trailing ``/``, ``/api`` or ``/api/v1``; ``https://`` if no scheme is given."""
    return api_base_url(
        url,
        malformed=f"the SimpleMDM API URL must look like {DEFAULT_BASE_URL}",
        default=DEFAULT_BASE_URL,
        suffixes=(DEVICES_PATH, "/api/v1", "/api"),
    )


def _macs(attributes: Mapping[str, Any], where: str) -> tuple[str, ...]:
    ethernet = attributes.get("ethernet_macs")
    if ethernet is None:
        ethernet = []
    if not isinstance(ethernet, list):
        raise VendorDataError(f"{where}: ethernet_macs is a {type(ethernet).__name__}, not a list")
    return checked_macs((attributes.get("wifi_mac"), *ethernet), where)


# Attribute keys, built once: every device's attributes hold the same key objects (an f-string in the converter
# made 50,000 copies of each, 27 MiB of a first sync's peak memory).
PRESENT = f"{NAMESPACE}:present"
STATUS = f"{NAMESPACE}:status"
FIREWALL_ENABLED = f"{NAMESPACE}:firewallEnabled"
BOOLEAN_KEYS = tuple((f"{NAMESPACE}:{name}", field) for name, field in BOOLEAN_FIELDS)


@functools.lru_cache(maxsize=256)
def _status_value(status: str) -> str:
    """``awaiting enrollment`` → ``awaiting_enrollment``; one shared string per status (a handful per fleet)."""
    return "_".join(status.split())


def agent_from_simplemdm(raw: Any, position: int = 0) -> Agent:
    """Map one device of ``GET /api/v1/devices`` to an ``Agent``; ``VendorDataError`` if it is malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} device #{position + 1} is not an object")
    device_id = raw.get("id")
    if isinstance(device_id, bool) or not isinstance(device_id, int | str) or str(device_id).strip() == "":
        raise VendorDataError(f"{LABEL} device #{position + 1} has no usable id")
    where = f"{LABEL} device {device_id}"
    source = raw.get("attributes")
    if not isinstance(source, dict):
        raise VendorDataError(f"{where} has no attributes object")
    attributes: dict[str, AttributeValue] = {PRESENT: True}
    status = optional_str(source, "status", where)
    if status is not None and status.strip():
        attributes[STATUS] = _status_value(status)
    for key, field in BOOLEAN_KEYS:
        flag = optional_bool(source, field, where)
        if flag is not None:
            attributes[key] = flag
    firewall = source.get("firewall")
    if firewall is not None and not isinstance(firewall, dict):
        raise VendorDataError(f"{where}: firewall is a {type(firewall).__name__}, not an object")
    enabled = optional_bool(firewall or {}, "enabled", f"{where} firewall")
    if enabled is not None:
        attributes[FIREWALL_ENABLED] = enabled
    hostname = optional_str(source, "device_name", where) or optional_str(source, "name", where) or ""
    return Agent(
        vendor=VENDOR,
        id=str(device_id),
        hostname=hostname,
        serial=optional_str(source, "serial_number", where),
        attributes=attributes,
        last_seen=parse_timestamp(source.get("last_seen_at"), "last_seen_at", where),
        active=status is None or status == "enrolled",
        decommissioned=False,
        mac_addresses=_macs(source, where),
    )


def _page(body: Any) -> tuple[list[Any], bool]:
    """The devices and ``has_more`` of one response body."""
    body, data = page_items(body, "data", label=LABEL, path=DEVICES_PATH)
    more = body.get("has_more", False)
    if not isinstance(more, bool):
        raise VendorDataError(f"{LABEL} API {DEVICES_PATH} answered a has_more that is not true or false")
    return data, more


class SimpleMDMClient(OwnedClient):
    """Fetches every enrolled device of a SimpleMDM account (``VendorClient``)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        limiter: SlidingWindowLimiter | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``limiter`` is optional (SimpleMDM documents no limit); ``clock`` times the fetch and the retry budget."""
        if not api_key:
            raise ValueError("SimpleMDM needs an API key")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"the SimpleMDM page size must be between 1 and {PAGE_SIZE}")
        self.base_url = normalize_base_url(base_url)
        self.page_size = page_size
        self.clock = clock
        self._own_client(http_client, timeout)
        basic = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            limiter=limiter,
            secrets=(api_key, basic),
            monotonic=clock,
        )

    def __repr__(self) -> str:
        return f"SimpleMDMClient(base_url={self.base_url!r})"

    def verify(self) -> int:
        """One device, on a short retry budget; how many the page listed. The device is checked like a synced
        one, so a URL that answers something else fails."""
        body = self._verify_http.get_json(
            f"{self.base_url}{DEVICES_PATH}", params={"limit": str(VERIFY_PAGE_SIZE)}, headers=self._headers
        )
        items, _more = _page(body)
        return verified_count(items, agent_from_simplemdm)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every enrolled device, in id order; raises on any failure (no partial list)."""
        url = f"{self.base_url}{DEVICES_PATH}"

        def fetch(cursor: str | None) -> Page:
            params = {"limit": str(self.page_size)}
            if cursor is not None:
                params["starting_after"] = cursor
            items, more = _page(self._http.get_json(url, params=params, headers=self._headers))
            if not more:
                return Page(items, None)
            if not items:
                raise VendorDataError(f"{LABEL} API {DEVICES_PATH} said has_more on an empty page")
            last = items[-1].get("id") if isinstance(items[-1], dict) else None
            if isinstance(last, bool) or not isinstance(last, int | str) or str(last).strip() == "":
                raise VendorDataError(f"{LABEL} API {DEVICES_PATH} page ends with a device without a usable id")
            return Page(items, str(last))

        return collect_agents(
            fetch,
            agent_from_simplemdm,
            label=LABEL,
            path=DEVICES_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="starting_after id",
        )


def build(values: Mapping[str, str]) -> SimpleMDMClient:
    """A client from an integration's settings (``api_key``, optional ``base_url``)."""
    api_key = (values.get("api_key") or "").strip()
    if not api_key:
        raise ValueError("SimpleMDM needs an API key")
    return SimpleMDMClient(api_key, base_url=normalize_base_url(values.get("base_url")))


SPEC = VendorSpec(
    id="simplemdm",
    label=LABEL,
    namespace=NAMESPACE,
    fields=(
        CredentialField(
            "api_key", "API key", secret=True, help="SimpleMDM → Settings → API; the key needs Devices: read"
        ),
        CredentialField("base_url", "API URL", required=False, help=f"Default {DEFAULT_BASE_URL}"),
    ),
    attributes=(
        KnownAttribute(
            f"{NAMESPACE}:present",
            "boolean",
            description="The device is enrolled in SimpleMDM (written as true for every matched device)",
        ),
        KnownAttribute(
            f"{NAMESPACE}:status",
            "string",
            STATUSES,
            description="Enrollment status as SimpleMDM reports it, spaces as _",
            hints={"awaitingenrollment": "awaiting_enrollment", "managed": "enrolled", "active": "enrolled"},
        ),
        KnownAttribute(f"{NAMESPACE}:supervised", "boolean", description="The device is supervised"),
        KnownAttribute(
            f"{NAMESPACE}:fileVaultEnabled",
            "boolean",
            description="FileVault disk encryption is on (macOS)",
        ),
        KnownAttribute(
            f"{NAMESPACE}:firewallEnabled",
            "boolean",
            description="The macOS application firewall is on",
        ),
        KnownAttribute(
            f"{NAMESPACE}:SIPEnabled",
            "boolean",
            description="System Integrity Protection is on (macOS)",
        ),
        KnownAttribute(
            f"{NAMESPACE}:passcodeCompliant",
            "boolean",
            description="The passcode meets the assigned passcode policy",
        ),
        KnownAttribute(
            f"{NAMESPACE}:depEnrolled",
            "boolean",
            description="Enrolled through Automated Device Enrollment (DEP)",
        ),
    ),
    build=build,
    default_base_url=DEFAULT_BASE_URL,
)
