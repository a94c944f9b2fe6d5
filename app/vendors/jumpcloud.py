"""JumpCloud: every system of an organization from ``GET /api/systems``, MACs from System Insights.

Tailscale has no JumpCloud integration (tailscale/tailscale#13000, open since 2024-08), so the keys are
ours, in the style of Tailscale's native ones (``<vendor>:<camelCaseField>``, values as the vendor reports
them, booleans as booleans). On the built-in tailnet they are written as below; on a real tailnet they
become ``custom:jumpcloud_<name>`` (``app.vendors.mapping``):

============================  =================================  ================================
key                           type / values                      from (``JcSystem``)
============================  =================================  ================================
``jumpcloud:present``         ``true``                           every system listed
``jumpcloud:active``          boolean                            ``active`` (agent connected now)
``jumpcloud:fdeActive``       boolean                            ``fde.active``
``jumpcloud:fdeKeyPresent``   boolean                            ``fde.keyPresent``
``jumpcloud:mdmVendor``       internal, external, none, unknown  ``mdm.vendor`` (verbatim)
``jumpcloud:policiesFailed``  number >= 0                        ``policyStats.failed``
``jumpcloud:agentVersion``    version string                     ``agentVersion``
============================  =================================  ================================

A field JumpCloud leaves out or sends as ``null`` ("not collected") leaves its attribute unset, never
``false``. This catalogue has no ``jumpcloud:stale``: freshness (``lastContact``, kept as ``Agent.last_seen``)
is judged by the framework's per-integration ``max_agent_age``, for every vendor alike.

Facts and where they come from (TheJumpCloud/jcapi-powershell ``SwaggerSpecs/JumpCloud.SDK.V1.json`` and
``JumpCloud.SDK.V2.json`` at 82c20c1, 2026-03-31, read for this module):

- Auth: header ``x-api-key`` (the only security definition of both specs); ``x-org-id`` is required for
  multi-tenant admins and names the organization. Service-account OAuth is not supported here (its token
  endpoint is unverified).
- ``GET /api/systems``: ``limit`` "Limited to 100" (default 10), ``skip`` offset, ``fields`` a space
  separated list of top-level fields; answer ``{"totalCount", "results"}``. The client asks for the fields it
  maps only. Once the first page came back full with the total, the other pages' offsets are known, so up to
  ``MAX_IN_FLIGHT`` (4) are asked for at once (``_http.collect_offset_pages``); a page shorter than asked
  before the end (a server capping ``limit`` lower) is followed by requests from where it ended, and the listing
  runs until ``totalCount`` is reached or a page is empty, as a one-at-a-time client would. Like the
  vendor's own SDK (``Get-JcSdkSystem -Paginate``: limit 100, skip, no ``sort``) it sends no ``sort``.
- ``JcSystem``: ``fde{active, keyPresent}``, ``mdm.vendor`` enum unknown|none|internal|external,
  ``policyStats{total, success, failed, pending, duplicate, unsupportedOs}`` (integers), ``lastContact``
  date-time and nullable, ``networkInterfaces`` without MACs.
- ``GET /api/v2/systeminsights/interface_details``: a bare JSON array of rows with ``system_id``,
  ``interface`` and ``mac``; ``limit`` max 10000 (default 10), ``skip``; filters on ``system_id`` and
  ``interface`` only. No total is sent, so the client pages until an empty page (one request more than
  strictly needed, but a server that caps ``limit`` below 10,000 cannot make it stop early and lose MACs).
- Rate limits: not in either spec, nor in any source read (UNVERIFIED). The client keeps no client-side
  limit and relies on the shared retry policy: a 429 is retried after its ``Retry-After`` (or with backoff).

MAC addresses (decision). They are cheap in requests when read account-wide: one
``interface_details`` request per 10,000 interface rows, next to one ``/api/systems`` request per 100 systems
(50,000 systems with 3 interfaces each: 500 + 16 requests, +3%), listed on a thread of their own while the
systems are paged, so they add no time of their own. Per-system or per-page filtered lookups
would double the request count or worse, so they are not used. Rows of systems not in the listing are
ignored; MACs are normalised to 12 lowercase hex digits, and empty, all-zero or broadcast ones dropped. The
lookup is part of the snapshot: if it fails, the sync fails and writes nothing (a device matched only by
its MAC must not lose its posture because the second listing broke). An organization without System
Insights should answer rows for no system (UNVERIFIED); if JumpCloud refuses the endpoint instead, or the
API key may not read System Insights, the ``mac_lookup`` setting (``off``) turns the lookup off.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from app.tailnet.models import AttributeValue
from app.vendors._fields import checked_mac, optional_bool, optional_str
from app.vendors._http import (
    VENDOR_RETRY,
    Monotonic,
    OwnedClient,
    RetryPolicy,
    Sleep,
    SlidingWindowLimiter,
    api_base_url,
    collect_offset_pages,
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

VENDOR = "jumpcloud"
LABEL = "JumpCloud"
NAMESPACE = "jumpcloud"
DEFAULT_BASE_URL = "https://console.jumpcloud.com"
EU_BASE_URL = "https://console.eu.jumpcloud.com"
SYSTEMS_PATH = "/api/systems"
INTERFACES_PATH = "/api/v2/systeminsights/interface_details"
PAGE_SIZE = 100
INTERFACE_PAGE_SIZE = 10_000
MAX_PAGES = 10_000
MAX_IN_FLIGHT = 4
"""Systems pages asked for at once: 500 pages at 50,000 systems cost a vendor round trip each, one after another.
Four keep the load on JumpCloud modest (no rate limit is documented; a 429 is waited out like any other)."""
MAX_NUMBER = 2**53 - 1
RETRY_POLICY = VENDOR_RETRY
MDM_VENDORS = ("internal", "external", "none", "unknown")
SYSTEM_FIELDS = (
    "_id",
    "displayName",
    "hostname",
    "serialNumber",
    "active",
    "lastContact",
    "agentVersion",
    "fde",
    "mdm",
    "policyStats",
)
"""Top-level ``JcSystem`` fields asked for (``fields=``): what is mapped, nothing more."""


def normalize_base_url(url: str | None) -> str:
    """``https://host`` without a trailing ``/``, ``/api`` or ``/api/v2``; ``https://`` if no scheme is given."""
    return api_base_url(
        url,
        malformed=f"the JumpCloud URL must look like {DEFAULT_BASE_URL} (or {EU_BASE_URL})",
        default=DEFAULT_BASE_URL,
        suffixes=(SYSTEMS_PATH, "/api/v2", "/api"),
    )


def parse_mac_lookup(value: str | None) -> bool:
    """The ``mac_lookup`` setting: empty, on, yes or true → on; off, no or false → off; ``ValueError`` otherwise."""
    text = (value or "").strip().lower()
    if text in ("", "on", "yes", "true"):
        return True
    if text in ("off", "no", "false"):
        return False
    raise ValueError("the JumpCloud MAC lookup setting must be on or off")


def _optional_object(raw: Mapping[str, Any], field: str, where: str) -> Mapping[str, Any]:
    value = raw.get(field)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise VendorDataError(f"{where}: {field} is a {type(value).__name__}, not an object")


def _optional_count(raw: Mapping[str, Any], field: str, where: str) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMBER:
        raise VendorDataError(f"{where}: {field} is {value!r}, not a non-negative whole number")
    return value


# Attribute keys, built once: every system's attributes hold the same key objects (an f-string in the converter
# made 50,000 copies of each, 20+ MiB of a first sync's peak memory).
PRESENT = f"{NAMESPACE}:present"
ACTIVE = f"{NAMESPACE}:active"
FDE_FIELDS = ((f"{NAMESPACE}:fdeActive", "active"), (f"{NAMESPACE}:fdeKeyPresent", "keyPresent"))
MDM_VENDOR = f"{NAMESPACE}:mdmVendor"
POLICIES_FAILED = f"{NAMESPACE}:policiesFailed"
AGENT_VERSION = f"{NAMESPACE}:agentVersion"


def agent_from_jumpcloud(raw: Any, position: int = 0) -> Agent:
    """Map one ``JcSystem`` of ``GET /api/systems`` to an ``Agent`` (without MACs); ``VendorDataError`` if malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} system #{position + 1} is not an object")
    system_id = raw.get("_id")
    if not isinstance(system_id, str) or not system_id.strip():
        raise VendorDataError(f"{LABEL} system #{position + 1} has no usable _id")
    where = f"{LABEL} system {system_id}"
    attributes: dict[str, AttributeValue] = {PRESENT: True}
    active = optional_bool(raw, "active", where)
    if active is not None:
        attributes[ACTIVE] = active
    fde = _optional_object(raw, "fde", where)
    for key, field in FDE_FIELDS:
        flag = optional_bool(fde, field, f"{where} fde")
        if flag is not None:
            attributes[key] = flag
    vendor = optional_str(_optional_object(raw, "mdm", where), "vendor", f"{where} mdm")
    if vendor is not None and vendor.strip():
        attributes[MDM_VENDOR] = vendor
    failed = _optional_count(_optional_object(raw, "policyStats", where), "failed", f"{where} policyStats")
    if failed is not None:
        attributes[POLICIES_FAILED] = failed
    version = optional_str(raw, "agentVersion", where)
    if version is not None and version.strip():
        attributes[AGENT_VERSION] = version
    hostname = optional_str(raw, "hostname", where) or optional_str(raw, "displayName", where) or ""
    return Agent(
        vendor=VENDOR,
        id=system_id,
        hostname=hostname,
        serial=optional_str(raw, "serialNumber", where),
        attributes=attributes,
        last_seen=parse_timestamp(raw.get("lastContact"), "lastContact", where),
        active=True if active is None else active,
        decommissioned=False,
    )


def _systems_page(body: Any) -> tuple[list[Any], int]:
    """The systems and ``totalCount`` of one ``/api/systems`` answer."""
    body, results = page_items(body, "results", label=LABEL, path=SYSTEMS_PATH)
    total = body.get("totalCount")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise VendorDataError(f"{LABEL} API {SYSTEMS_PATH} answered without a usable totalCount")
    return results, total


def _interface_rows(body: Any) -> list[tuple[str, Any]]:
    """(system_id, mac) of each row of one ``interface_details`` answer."""
    if not isinstance(body, list):
        raise VendorDataError(f"{LABEL} API {INTERFACES_PATH} answered something other than a JSON array")
    rows: list[tuple[str, Any]] = []
    for number, row in enumerate(body, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("system_id"), str):
            raise VendorDataError(f"{LABEL} API {INTERFACES_PATH} row {number} has no system_id")
        rows.append((row["system_id"], row.get("mac")))
    return rows


class JumpCloudClient(OwnedClient):
    """Fetches every system of a JumpCloud organization, with MACs from System Insights (``VendorClient``)."""

    def __init__(
        self,
        api_key: str,
        *,
        org_id: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        mac_lookup: bool = True,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        limiter: SlidingWindowLimiter | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
        interface_page_size: int = INTERFACE_PAGE_SIZE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        """``org_id`` is sent as ``x-org-id`` (multi-tenant admins); ``limiter`` is optional (no documented limit);
        ``max_in_flight`` systems pages are asked for at once (1: one after another)."""
        if not api_key:
            raise ValueError("JumpCloud needs an API key")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"the JumpCloud page size must be between 1 and {PAGE_SIZE}")
        if not 1 <= interface_page_size <= INTERFACE_PAGE_SIZE:
            raise ValueError(f"the System Insights page size must be between 1 and {INTERFACE_PAGE_SIZE}")
        self.base_url = normalize_base_url(base_url)
        self.org_id = (org_id or "").strip() or None
        self.mac_lookup = mac_lookup
        self.page_size = page_size
        self.interface_page_size = interface_page_size
        if max_in_flight < 1:
            raise ValueError("at least one request must be allowed in flight")
        self.max_in_flight = max_in_flight
        self.clock = clock
        self._own_client(http_client, timeout)
        self._headers = {"x-api-key": api_key, "Accept": "application/json"}
        if self.org_id is not None:
            self._headers["x-org-id"] = self.org_id
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            limiter=limiter,
            secrets=(api_key,),
            monotonic=clock,
        )

    def __repr__(self) -> str:
        return f"JumpCloudClient(base_url={self.base_url!r}, org_id={self.org_id!r}, mac_lookup={self.mac_lookup})"

    def _system_params(self, limit: int, skip: int) -> dict[str, str]:
        return {"limit": str(limit), "skip": str(skip), "fields": " ".join(SYSTEM_FIELDS)}

    def verify(self) -> int:
        """One system, on a short retry budget; how many the page listed. The system is checked like a synced
        one, so a URL that answers something else fails. System Insights is not asked."""
        body = self._verify_http.get_json(
            f"{self.base_url}{SYSTEMS_PATH}", params=self._system_params(VERIFY_PAGE_SIZE, 0), headers=self._headers
        )
        items, _total = _systems_page(body)
        return verified_count(items, agent_from_jumpcloud)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every system (then every interface row, unless the lookup is off); raises on any failure."""
        url = f"{self.base_url}{SYSTEMS_PATH}"

        def fetch(skip: int, limit: int) -> tuple[list[Any], int]:
            body = self._http.get_json(url, params=self._system_params(limit, skip), headers=self._headers)
            return _systems_page(body)

        def systems() -> list[Agent]:
            return collect_offset_pages(
                fetch,
                agent_from_jumpcloud,
                limit=self.page_size,
                in_flight=self.max_in_flight,
                label=LABEL,
                path=SYSTEMS_PATH,
                progress=progress,
                clock=self.clock,
                max_pages=MAX_PAGES,
            )

        if not self.mac_lookup:
            return systems()
        # The two listings are independent: the interface rows arrive while the systems are paged (their 500 round
        # trips dominate), instead of after them. Either failing fails the sync, as one listing would.
        beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{LABEL}-interfaces")
        try:
            interfaces = beside.submit(self._interface_rows)
            agents = systems()
            macs = _macs_of(interfaces.result(), {agent.id for agent in agents})
        finally:
            beside.shutdown(wait=False, cancel_futures=True)  # a failed listing does not wait for the other
        return [_with_macs(agent, macs[agent.id]) if agent.id in macs else agent for agent in agents]

    def _interface_rows(self) -> list[tuple[str, Any]]:
        """(system id, MAC as answered) of every ``interface_details`` page."""
        url = f"{self.base_url}{INTERFACES_PATH}"
        rows: list[tuple[str, Any]] = []
        skip = 0
        for _page in range(MAX_PAGES):
            params = {"limit": str(self.interface_page_size), "skip": str(skip)}
            page = _interface_rows(self._http.get_json(url, params=params, headers=self._headers))
            if not page:
                return rows
            rows.extend(page)
            skip += len(page)
        raise VendorDataError(f"{LABEL} API {INTERFACES_PATH} still had more pages after {MAX_PAGES}")


def _macs_of(rows: list[tuple[str, Any]], system_ids: set[str]) -> dict[str, tuple[str, ...]]:
    """System id → its distinct MACs in listing order, for the listed systems (others' rows are not looked at)."""
    found: dict[str, list[str]] = {}
    for system_id, mac in rows:
        if system_id not in system_ids:
            continue
        digits = checked_mac(mac, f"{LABEL} system {system_id} interface")
        if digits is None:
            continue
        known = found.get(system_id)
        if known is None:
            found[system_id] = [digits]
        elif digits not in known:
            known.append(digits)
    return {system_id: tuple(macs) for system_id, macs in found.items()}


def _with_macs(agent: Agent, macs: tuple[str, ...]) -> Agent:
    """``agent`` with its MACs (built directly: ``dataclasses.replace`` costs several times more, 50,000 times)."""
    return Agent(
        agent.vendor,
        agent.id,
        agent.hostname,
        agent.serial,
        agent.attributes,
        agent.last_seen,
        agent.active,
        agent.decommissioned,
        macs,
    )


def build(values: Mapping[str, str]) -> JumpCloudClient:
    """A client from an integration's settings (``api_key``, optional ``org_id``, ``base_url``, ``mac_lookup``)."""
    api_key = (values.get("api_key") or "").strip()
    if not api_key:
        raise ValueError("JumpCloud needs an API key")
    return JumpCloudClient(
        api_key,
        org_id=values.get("org_id"),
        base_url=normalize_base_url(values.get("base_url")),
        mac_lookup=parse_mac_lookup(values.get("mac_lookup")),
    )


SPEC = VendorSpec(
    id="jumpcloud",
    label=LABEL,
    namespace=NAMESPACE,
    fields=(
        CredentialField(
            "api_key", "API key", secret=True, help="JumpCloud admin console → your account → API Settings"
        ),
        CredentialField("org_id", "Organization id", required=False, help="Multi-tenant admins only: sent as x-org-id"),
        CredentialField(
            "base_url", "Console URL", required=False, help=f"Default {DEFAULT_BASE_URL}; EU {EU_BASE_URL}"
        ),
        CredentialField(
            "mac_lookup",
            "MAC lookup (on/off)",
            required=False,
            help="Read MACs from System Insights for matching (default on; off if the key may not read it)",
        ),
    ),
    attributes=(
        KnownAttribute(
            f"{NAMESPACE}:present",
            "boolean",
            description="The device is a JumpCloud system (written as true for every matched system)",
        ),
        KnownAttribute(
            f"{NAMESPACE}:active",
            "boolean",
            description="The JumpCloud agent is connected right now",
        ),
        KnownAttribute(
            f"{NAMESPACE}:fdeActive",
            "boolean",
            description="Full disk encryption is on (FileVault, BitLocker, LUKS)",
        ),
        KnownAttribute(
            f"{NAMESPACE}:fdeKeyPresent",
            "boolean",
            description="JumpCloud holds the disk encryption recovery key",
        ),
        KnownAttribute(
            f"{NAMESPACE}:mdmVendor",
            "string",
            MDM_VENDORS,
            description="Which MDM manages the system: internal (JumpCloud MDM), external (another), none, unknown",
            hints={"jumpcloud": "internal", "managed": "internal", "other": "external", "unmanaged": "none"},
        ),
        KnownAttribute(
            f"{NAMESPACE}:policiesFailed",
            "number",
            description="How many JumpCloud policies failed on the system (0 = none)",
        ),
        KnownAttribute(
            f"{NAMESPACE}:agentVersion",
            "string",
            description="Installed JumpCloud agent version, e.g. 1.178.0",
            version=True,
        ),
    ),
    build=build,
    default_base_url=DEFAULT_BASE_URL,
)
