"""Iru (formerly Kandji): every device of a tenant from ``GET {api_url}/api/v1/prism/device_information``.

This is the Prism "Device information" listing Tailscale's own Kandji/Iru integration reads (token permission
Prism > Device Information). ``Authorization: Bearer <token>``; pages of at most 300 (the documented hard upper
``limit``) stepped by ``offset`` until ``total`` is reached, sorted by ``device_id`` so offset paging stays
stable while devices come and go. Two attributes, as Tailscale writes them: ``kandji:mdmEnabled`` and
``kandji:agentInstalled`` (booleans).

Facts checked, and where (MScottBlake/kandji-openapi ``openapi.json``, the vendor's Postman export, 923b4b5):

- the Prism answer is ``{"cursor": null, "data": [...], "limit": L, "offset": O, "total": N}``; its published
  sample has ``"agent_installed": null`` and ``"agent_version": null`` on a device without the agent, so a null
  is "not collected / no agent" and leaves the attribute UNSET (never ``false``: a rule ``agentInstalled ==
  false`` must not match a device that was never asked). Whether Tailscale writes ``false`` there is unverified.
- the API sits behind Kong (``Via: kong/3.2.2``) whose rate-limiting plugin answers every request with
  ``RateLimit-Limit/-Remaining/-Reset`` (seconds) and ``X-RateLimit-{Limit,Remaining}-{Second,Hour}``
  (samples: 50 a second, 10,000 an hour per tenant). Kong's plugin adds ``Retry-After`` (seconds) to its 429
  since Kong/kong#5329; should a 429 come without it, this client reads ``RateLimit-Reset`` instead (a response
  hook copies it into ``Retry-After`` for the shared retry policy). The client also limits itself to 50
  request starts a second per tenant and token. The 429 body is Kong's ``{"message": "API rate limit
  exceeded"}``; the 401 body (``{"detail": ...}``, Django REST style) is unverified and only shown, never parsed.
- tokens do not expire by themselves (none documented); a revoked or wrong token gets 401 → ``VendorAuthError``.
- the Prism listing has no MAC addresses (they are only in ``/api/v1/devices/{id}/details``, one request per
  device), so Kandji agents match on serial numbers only.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import httpx

from app.tailnet.models import AttributeValue
from app.vendors._fields import optional_bool, optional_str
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
    shared_limiter,
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

VENDOR = "kandji"
LABEL = "Kandji"
DEVICES_PATH = "/api/v1/prism/device_information"
PAGE_SIZE = 300
MAX_PAGES = 10_000
RATE_LIMIT = 50
RATE_WINDOW = 1.05
RETRY_POLICY = VENDOR_RETRY
EXAMPLE_URL = "https://example.api.kandji.io"

BOOLEAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("kandji:mdmEnabled", "mdm_enabled"),
    ("kandji:agentInstalled", "agent_installed"),
)


def normalize_api_url(url: str | None) -> str:
    """``https://<sub>.api.kandji.io`` without a trailing ``/`` or ``/api/v1``; ``https://`` added if missing."""
    return api_base_url(
        url,
        malformed=f"the Kandji API URL must look like {EXAMPLE_URL}",
        missing=f"Kandji needs the tenant's API URL, e.g. {EXAMPLE_URL} (Settings > Access)",
        suffixes=(DEVICES_PATH, "/api/v1", "/api"),
    )


def rate_limit_reset_as_retry_after(response: httpx.Response) -> None:
    """On a 429 without ``Retry-After``, take Kong's ``RateLimit-Reset`` (seconds) as the wait."""
    if response.status_code != 429 or "Retry-After" in response.headers:
        return
    reset = response.headers.get("RateLimit-Reset", "").strip()
    if reset.isdigit():
        response.headers["Retry-After"] = reset


def agent_from_kandji(raw: Any, position: int = 0) -> Agent:
    """Map one device of the Prism device information listing to an ``Agent``; ``VendorDataError`` if malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} device #{position + 1} is not an object")
    device_id = raw.get("device_id")
    if not isinstance(device_id, str) or not device_id.strip():
        raise VendorDataError(f"{LABEL} device #{position + 1} has no usable device_id")
    where = f"{LABEL} device {device_id}"
    attributes: dict[str, AttributeValue] = {}
    for key, field in BOOLEAN_FIELDS:
        flag = optional_bool(raw, field, where)
        if flag is not None:
            attributes[key] = flag
    last_seen = parse_timestamp(raw.get("last_checkin"), "last_checkin", where)
    if last_seen is None:
        seen = [parse_timestamp(raw.get(field), field, where) for field in ("last_checkin_mdm", "last_checkin_agent")]
        last_seen = max((s for s in seen if s is not None), default=None)
    return Agent(
        vendor=VENDOR,
        id=device_id,
        hostname=optional_str(raw, "device__name", where) or "",
        serial=optional_str(raw, "serial_number", where),
        attributes=attributes,
        last_seen=last_seen,
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _page(body: Any) -> tuple[list[Any], int | None]:
    """The devices and the total of one response body."""
    body, data = page_items(body, "data", label=LABEL, path=DEVICES_PATH)
    total = body.get("total")
    if total is not None and _int_or_none(total) is None:
        raise VendorDataError(f"{LABEL} API {DEVICES_PATH} answered a total that is not a whole number")
    return data, total


def next_offset(offset: int, count: int, total: int | None, limit: int) -> int | None:
    """Where the next page starts, or ``None`` after the last one.

    With a ``total``: until ``offset + count`` reaches it (an empty page before that is a data error, since
    asking again would answer the same). Without one: until a page comes back shorter than ``limit``.
    """
    end = offset + count
    if total is not None:
        if end >= total:
            return None
        if count == 0:
            raise VendorDataError(
                f"{LABEL} API {DEVICES_PATH} answered an empty page at offset {offset} of {total} devices"
            )
        return end
    return end if count >= limit else None


class KandjiClient(OwnedClient):
    """Fetches every device of a Kandji/Iru tenant (``VendorClient``)."""

    def __init__(
        self,
        api_url: str,
        api_token: str,
        *,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        limiter: SlidingWindowLimiter | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``limiter`` defaults to a fresh 50-a-second one on ``clock``/``sleep`` (``SPEC.build`` shares one)."""
        if not api_token:
            raise ValueError("Kandji needs an API token")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"the Kandji page size must be between 1 and {PAGE_SIZE}")
        self.api_url = normalize_api_url(api_url)
        self.page_size = page_size
        self.clock = clock
        self.limiter = limiter or SlidingWindowLimiter(RATE_LIMIT, RATE_WINDOW, clock=clock, sleep=sleep)
        self._own_client(http_client, timeout)
        self._client.event_hooks["response"] = [
            *self._client.event_hooks.get("response", []),
            rate_limit_reset_as_retry_after,
        ]
        self._headers = {"Authorization": f"Bearer {api_token}", "Accept": "application/json"}
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            limiter=self.limiter,
            secrets=(api_token,),
            monotonic=clock,
        )

    def __repr__(self) -> str:
        return f"KandjiClient(api_url={self.api_url!r})"

    def _params(self, offset: int, limit: int) -> dict[str, str]:
        return {"limit": str(limit), "offset": str(offset), "sort_by": "device_id"}

    def verify(self) -> int:
        """One device, on a short retry budget; how many the page listed. The device is checked like a synced
        one, so a URL that answers something else fails."""
        body = self._verify_http.get_json(
            f"{self.api_url}{DEVICES_PATH}", params=self._params(0, VERIFY_PAGE_SIZE), headers=self._headers
        )
        items, _total = _page(body)
        return verified_count(items, agent_from_kandji)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every device, page by page; raises on any failure (no partial list)."""
        url = f"{self.api_url}{DEVICES_PATH}"

        def fetch(token: str | None) -> Page:
            offset = int(token) if token is not None else 0
            body = self._http.get_json(url, params=self._params(offset, self.page_size), headers=self._headers)
            items, total = _page(body)
            following = next_offset(offset, len(items), total, self.page_size)
            return Page(items, None if following is None else str(following), total)

        return collect_agents(
            fetch,
            agent_from_kandji,
            label=LABEL,
            path=DEVICES_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="offset",
        )


def build(values: Mapping[str, str]) -> KandjiClient:
    """A client from an integration's settings; clients of one tenant and token share one rate limiter."""
    token = (values.get("api_token") or "").strip()
    if not token:
        raise ValueError("Kandji needs an API token")
    api_url = normalize_api_url(values.get("api_url"))
    return KandjiClient(api_url, token, limiter=shared_limiter(api_url, token, RATE_LIMIT, RATE_WINDOW))


SPEC = VendorSpec(
    id="kandji",
    label=LABEL,
    namespace="kandji",
    fields=(
        CredentialField(
            "api_url",
            "API URL",
            help=f"Settings > Access > API URL, e.g. {EXAMPLE_URL} (EU: .api.eu.kandji.io; Iru: .api.iru.com)",
        ),
        CredentialField(
            "api_token", "API token", secret=True, help="Permission Prism > Device information; shown once"
        ),
    ),
    attributes=(
        KnownAttribute(
            "kandji:mdmEnabled",
            "boolean",
            description="Whether the device is enrolled in Kandji (Iru) MDM",
        ),
        KnownAttribute(
            "kandji:agentInstalled",
            "boolean",
            description="Whether the Kandji (Iru) agent is installed; unset where there is no agent (iPad, iPhone)",
        ),
    ),
    build=build,
)
