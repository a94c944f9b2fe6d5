"""Kolide (1Password Extended Access Management, "Device Trust"): every device and its auth state.

``GET {base}/devices`` with ``Authorization: Bearer <API key>`` and ``X-Kolide-Api-Version: 2023-05-26``; pages
of 100 (the documented maximum of ``per_page``) followed through ``pagination.next_cursor`` until it is ``""``.
``auth_state`` is written verbatim as ``kolide:authState`` (``Good``, ``Notified``, ``Will Block``, ``Blocked``:
the values and key Tailscale's own Kolide integration writes, so one policy file works on both kinds of tailnet).

Facts checked (kolide/device-trust-mcp-server ``openapi/openapi2023-05-26.json`` and ``openapi2026-04-07.json``,
commit 95174ea): the ``device`` schema (``id`` string, ``name``, ``serial``, ``last_seen_at``,
``last_authenticated_at``, ``auth_state`` enum ``Will Block|Blocked|Notified|Good``) is the same in both
versions; ``per_page`` is 1..100 (default 25); ``pagination{next, current_cursor, next_cursor, count}`` with
``next_cursor`` "blank if there are no more results"; 401 answers ``{"error"}`` and 403 ``{"error", "message"}``.
Still UNVERIFIED (no source documents them): a rate limit and its headers, and whether keys expire. The client
therefore sets no client-side limit and relies on the shared retry policy, which backs off on 429 and honours
``Retry-After`` when sent; a refused key (401/403) pauses the integration like any other vendor's.

Kolide reports no MAC addresses, so its devices match on serial numbers only. A null or blank ``auth_state``
("not collected") leaves ``kolide:authState`` unset; any other non-string is a ``VendorDataError``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import httpx

from app.tailnet.models import AttributeValue
from app.vendors._fields import optional_str
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
    next_pointer,
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

VENDOR = "kolide"
LABEL = "Kolide"
DEFAULT_BASE_URL = "https://api.kolide.com"
DEVICES_PATH = "/devices"
API_VERSION = "2023-05-26"
PAGE_SIZE = 100
MAX_PAGES = 10_000
RETRY_POLICY = VENDOR_RETRY
AUTH_STATES = ("Good", "Notified", "Will Block", "Blocked")
AUTH_STATE_KEY = "kolide:authState"


def normalize_base_url(url: str | None) -> str:
    """``https://host[/prefix]`` without a trailing ``/``; ``https://`` added when no scheme is given."""
    return api_base_url(
        url,
        malformed=f"the Kolide API base URL must look like {DEFAULT_BASE_URL}",
        default=DEFAULT_BASE_URL,
    )


def agent_from_kolide(raw: Any, position: int = 0) -> Agent:
    """Map one device of ``GET /devices`` to an ``Agent``; ``VendorDataError`` if it is malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} device #{position + 1} is not an object")
    device_id = raw.get("id")
    if isinstance(device_id, bool) or not isinstance(device_id, int | str) or str(device_id).strip() == "":
        raise VendorDataError(f"{LABEL} device #{position + 1} has no usable id")
    where = f"{LABEL} device {device_id}"
    attributes: dict[str, AttributeValue] = {}
    state = optional_str(raw, "auth_state", where)
    if state is not None and state.strip():
        attributes[AUTH_STATE_KEY] = state  # verbatim, "Will Block" keeps its space
    last_seen = parse_timestamp(raw.get("last_seen_at"), "last_seen_at", where)
    if last_seen is None:
        last_seen = parse_timestamp(raw.get("last_authenticated_at"), "last_authenticated_at", where)
    serial = optional_str(raw, "serial", where)
    return Agent(
        vendor=VENDOR,
        id=str(device_id),
        hostname=optional_str(raw, "name", where) or "",
        serial=serial if serial and serial.strip() else None,
        attributes=attributes,
        last_seen=last_seen,
    )


def _page(body: Any) -> tuple[list[Any], str | None]:
    """The devices and the next cursor of one response body."""
    body, data = page_items(body, "data", label=LABEL, path=DEVICES_PATH)
    _pagination, cursor = next_pointer(body, "next_cursor", label=LABEL, path=DEVICES_PATH)
    return data, cursor


class KolideClient(OwnedClient):
    """Fetches every device of a Kolide account (``VendorClient``)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = API_VERSION,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        limiter: SlidingWindowLimiter | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``limiter`` is optional: Kolide documents no rate limit (429s are still backed off)."""
        if not api_key:
            raise ValueError("Kolide needs an API key")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"the Kolide page size must be between 1 and {PAGE_SIZE}")
        self.base_url = normalize_base_url(base_url)
        self.page_size = page_size
        self.clock = clock
        self._own_client(http_client, timeout)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "X-Kolide-Api-Version": api_version,
            "Accept": "application/json",
        }
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
        return f"KolideClient(base_url={self.base_url!r})"

    def verify(self) -> int:
        """One device of the first page, on a short retry budget; how many devices it listed. The device is
        checked like a synced one, so a URL that answers something else fails."""
        body = self._verify_http.get_json(
            f"{self.base_url}{DEVICES_PATH}", params={"per_page": str(VERIFY_PAGE_SIZE)}, headers=self._headers
        )
        items, _next = _page(body)
        return verified_count(items, agent_from_kolide)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every device, cursor by cursor, in listing order; raises on any failure (no partial list)."""
        url = f"{self.base_url}{DEVICES_PATH}"

        def fetch(cursor: str | None) -> Page:
            params = {"per_page": str(self.page_size)}
            if cursor is not None:
                params["cursor"] = cursor
            items, next_cursor = _page(self._http.get_json(url, params=params, headers=self._headers))
            return Page(items, next_cursor)

        return collect_agents(
            fetch,
            agent_from_kolide,
            label=LABEL,
            path=DEVICES_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="cursor",
        )


def build(values: Mapping[str, str]) -> KolideClient:
    """A client from an integration's settings (``api_key``, optional ``base_url``)."""
    api_key = (values.get("api_key") or "").strip()
    if not api_key:
        raise ValueError("Kolide needs an API key")
    return KolideClient(api_key, base_url=normalize_base_url(values.get("base_url")))


SPEC = VendorSpec(
    id="kolide",
    label=LABEL,
    namespace="kolide",
    fields=(
        CredentialField(
            "api_key", "API key", secret=True, help="Kolide → Settings → Developers → API Keys (read-only suffices)"
        ),
        CredentialField("base_url", "API base URL", required=False, help=f"Default {DEFAULT_BASE_URL}"),
    ),
    attributes=(
        KnownAttribute(
            AUTH_STATE_KEY,
            "string",
            AUTH_STATES,
            description="Whether Kolide lets the device authenticate: Good, Notified (failing checks), Will Block "
            "(blocked at will_block_at unless fixed) or Blocked",
            hints={
                **dict.fromkeys(("ok", "healthy", "pass", "passing", "compliant", "allowed", "trusted"), "Good"),
                **dict.fromkeys(("warning", "warn", "notify"), "Notified"),
                **dict.fromkeys(("block", "blocking", "denied", "failing"), "Blocked"),
            },
        ),
    ),
    build=build,
    default_base_url=DEFAULT_BASE_URL,
)
