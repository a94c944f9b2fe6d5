"""Huntress: every agent of an account (optionally one organization) from ``GET /v1/agents``.

HTTP Basic ``api_key:api_secret``; pages of 500 followed through ``pagination.next_page_token``. Huntress
allows 60 requests per minute on a sliding window, so the client limits itself (at most 60 request starts in
any 60.5 s — half a second of slack for network jitter) and still backs off on a 429. The three Defender and
firewall statuses are written verbatim ("Non Compliant" keeps its space); a null, missing or blank status
leaves its attribute out.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx

from app.core.macaddr import matchable_macs
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

VENDOR = "huntress"
LABEL = "Huntress"
DEFAULT_BASE_URL = "https://api.huntress.io"
AGENTS_PATH = "/v1/agents"
PAGE_SIZE = 500
RATE_LIMIT = 60
RATE_WINDOW = 60.5
MAX_PAGES = 10_000
# Huntress answers 429 with no documented Retry-After; start backoff high enough to matter for a 60 s window.
RETRY_POLICY = replace(VENDOR_RETRY, rate_limited_base=5.0)

# attribute key → agent field, in the order they are documented
ATTRIBUTE_FIELDS: tuple[tuple[str, str], ...] = (
    ("huntress:defenderStatus", "defender_status"),
    ("huntress:defenderPolicyStatus", "defender_policy_status"),
    ("huntress:firewallStatus", "firewall_status"),
)


def normalize_base_url(url: str | None) -> str:
    """``https://host[/prefix]`` without a trailing ``/`` or ``/v1``; ``https://`` added when no scheme is given."""
    return api_base_url(
        url,
        malformed=f"the Huntress API base URL must look like {DEFAULT_BASE_URL}",
        default=DEFAULT_BASE_URL,
        suffixes=("/v1",),
    )


def _organization(value: int | str | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("the Huntress organization id must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError("the Huntress organization id must be a whole number")
    if number < 1:
        raise ValueError("the Huntress organization id must be positive")
    return number


def agent_from_huntress(raw: Any, position: int = 0) -> Agent:
    """Map one agent object of ``GET /v1/agents`` to an ``Agent``; ``VendorDataError`` if it is malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} agent #{position + 1} is not an object")
    agent_id = raw.get("id")
    if isinstance(agent_id, bool) or not isinstance(agent_id, int | str) or str(agent_id).strip() == "":
        raise VendorDataError(f"{LABEL} agent #{position + 1} has no usable id")
    where = f"{LABEL} agent {agent_id}"
    attributes: dict[str, AttributeValue] = {}
    for key, field in ATTRIBUTE_FIELDS:
        value = optional_str(raw, field, where)
        if value is not None and value.strip():
            attributes[key] = value
    macs = raw.get("mac_addresses")
    if macs is not None and not isinstance(macs, list):
        raise VendorDataError(f"{where}: mac_addresses is a {type(macs).__name__}, not a list")
    last_seen = parse_timestamp(raw.get("last_callback_at"), "last_callback_at", where)
    if last_seen is None:
        last_seen = parse_timestamp(raw.get("updated_at"), "updated_at", where)
    return Agent(
        vendor=VENDOR,
        id=str(agent_id),
        hostname=optional_str(raw, "hostname", where) or "",
        serial=optional_str(raw, "serial_number", where),
        attributes=attributes,
        last_seen=last_seen,
        active=True,
        decommissioned=False,
        mac_addresses=matchable_macs(macs or ()),  # documented: "mac_addresses": ["7c:a7:b0:16:2f:78"]
    )


def _page(body: Any) -> tuple[list[Any], str | None]:
    """The agents and the next page token of one response body."""
    body, agents = page_items(body, "agents", label=LABEL, path=AGENTS_PATH)
    _pagination, token = next_pointer(body, "next_page_token", label=LABEL, path=AGENTS_PATH)
    return agents, token


class HuntressClient(OwnedClient):
    """Fetches all agents of a Huntress account (``VendorClient``)."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        organization_id: int | str | None = None,
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
        """``limiter`` defaults to a fresh 60-per-60.5 s one on ``clock``/``sleep`` (``SPEC.build`` shares one)."""
        if not api_key or not api_secret:
            raise ValueError("Huntress needs both an API key and an API secret")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"the Huntress page size must be between 1 and {PAGE_SIZE}")
        self.base_url = normalize_base_url(base_url)
        self.organization_id = _organization(organization_id)
        self.page_size = page_size
        self.clock = clock
        self.limiter = limiter or SlidingWindowLimiter(RATE_LIMIT, RATE_WINDOW, clock=clock, sleep=sleep)
        self._own_client(http_client, timeout)
        basic = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            limiter=self.limiter,
            secrets=(api_key, api_secret, basic),
            monotonic=clock,
        )

    def __repr__(self) -> str:
        return f"HuntressClient(base_url={self.base_url!r}, organization_id={self.organization_id!r})"

    def _params(self, limit: int) -> dict[str, str]:
        params = {"limit": str(limit)}
        if self.organization_id is not None:
            params["organization_id"] = str(self.organization_id)
        return params

    def verify(self) -> int:
        """One agent of the first page (the organization's, if one is set), on a short retry budget; how many
        agents it listed. The agent is checked like a synced one, so a URL that answers something else fails."""
        body = self._verify_http.get_json(
            f"{self.base_url}{AGENTS_PATH}", params=self._params(VERIFY_PAGE_SIZE), headers=self._headers
        )
        items, _next = _page(body)
        return verified_count(items, agent_from_huntress)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every agent, page by page, in the order Huntress lists them; raises on any failure (no partial list)."""
        url = f"{self.base_url}{AGENTS_PATH}"

        def fetch(token: str | None) -> Page:
            params = self._params(self.page_size)
            if token is not None:
                params["page_token"] = token
            items, next_token = _page(self._http.get_json(url, params=params, headers=self._headers))
            return Page(items, next_token)

        return collect_agents(
            fetch,
            agent_from_huntress,
            label=LABEL,
            path=AGENTS_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="page token",
        )


def build(values: Mapping[str, str]) -> HuntressClient:
    """A client from an integration's settings; clients of one account share one process-wide rate limiter."""
    api_key = (values.get("api_key") or "").strip()
    api_secret = (values.get("api_secret") or "").strip()
    if not api_key or not api_secret:
        raise ValueError("Huntress needs both an API key and an API secret")
    base_url = normalize_base_url(values.get("base_url"))
    return HuntressClient(
        api_key,
        api_secret,
        organization_id=values.get("organization_id"),
        base_url=base_url,
        limiter=shared_limiter(base_url, api_key, RATE_LIMIT, RATE_WINDOW),
    )


SPEC = VendorSpec(
    id="huntress",
    label=LABEL,
    namespace="huntress",
    fields=(
        CredentialField("api_key", "API key", secret=True, help="Huntress account → API Credentials"),
        CredentialField("api_secret", "API secret", secret=True, help="Shown once when the key is generated"),
        CredentialField(
            "organization_id", "Organization id", required=False, help="Only sync this organization's agents"
        ),
        CredentialField("base_url", "API base URL", required=False, help=f"Default {DEFAULT_BASE_URL}"),
    ),
    attributes=(
        KnownAttribute(
            "huntress:defenderStatus",
            "string",
            ("Incompatible", "Unhealthy", "Protected", "Unmanaged"),
            description="Microsoft Defender antivirus health as Huntress Managed AV reports it",
            hints=dict.fromkeys(("healthy", "enabled", "active", "ok", "good", "compliant"), "Protected"),
        ),
        KnownAttribute(
            "huntress:defenderPolicyStatus",
            "string",
            ("Unknown", "Non Compliant", "Compliant", "Pending", "Gpo Conflict"),
            description="Whether Defender follows the Huntress Managed AV policy",
            hints={"noncompliant": "Non Compliant", "gpoconflict": "Gpo Conflict"},
        ),
        KnownAttribute(
            "huntress:firewallStatus",
            "string",
            ("Disabled", "Enabled", "Pending Isolation", "Isolated", "Pending Release"),
            description="Host firewall state, including Huntress host isolation",
            hints={"on": "Enabled", "active": "Enabled", "off": "Disabled", "inactive": "Disabled"},
        ),
    ),
    build=build,
    default_base_url=DEFAULT_BASE_URL,
)
