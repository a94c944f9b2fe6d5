"""SentinelOne: every agent that is not decommissioned, from ``GET {console}/web/api/v2.1/agents``.

``Authorization: ApiToken <token>``; pages of 1000 followed through ``pagination.nextCursor``; ``totalItems``
feeds the progress callback. Errors come as ``{"errors": [{"code", "detail", "title"}]}`` and their
title/detail is shown to the admin (with the token redacted should the console ever echo it).

Value types are checked, with two tolerances for ``activeThreats`` (a count): an integral float such as
``2.0`` and a string of digits such as ``"3"`` become ints. Anything else that is not a non-negative integer
— ``"3 threats"``, ``2.5``, ``-1``, ``true`` — and any boolean field that is not a JSON boolean (``"true"``,
``1``) is a ``VendorDataError``: the snapshot is refused rather than a posture guessed.
"""

from __future__ import annotations

import logging
import random
import re
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

VENDOR = "sentinelone"
LABEL = "SentinelOne"
AGENTS_PATH = "/web/api/v2.1/agents"
PAGE_SIZE = 1000
MAX_PAGES = 10_000
MAX_NUMBER = 2**53 - 1
RETRY_POLICY = VENDOR_RETRY
OPERATIONAL_STATES = (
    "na",
    "partially_disabled",
    "auto_partially_disabled",
    "fully_disabled",
    "auto_fully_disabled",
    "disabled_error",
    "db_corruption",
)
_DIGITS = re.compile(r"\s*\d+\s*")

BOOLEAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("sentinelOne:encryptedApplications", "encryptedApplications"),
    ("sentinelOne:firewallEnabled", "firewallEnabled"),
    ("sentinelOne:infected", "infected"),
)


def normalize_console_url(url: str | None) -> str:
    """``https://tenant.sentinelone.net`` without a trailing ``/`` or ``/web/api/v2.1``; ``https://`` if no scheme."""
    return api_base_url(
        url,
        malformed="the SentinelOne console URL must look like https://example.sentinelone.net",
        missing="SentinelOne needs the console URL, e.g. https://example.sentinelone.net",
        suffixes=(AGENTS_PATH, "/web/api/v2.1", "/web/api"),
    )


def _optional_count(raw: Mapping[str, Any], field: str, where: str) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    number: int | None = None
    integral_float = isinstance(value, float) and value.is_integer()
    digit_string = isinstance(value, str) and _DIGITS.fullmatch(value) is not None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif integral_float or digit_string:
        number = int(value)
    if number is None or not 0 <= number <= MAX_NUMBER:
        raise VendorDataError(f"{where}: {field} is {value!r}, not a non-negative whole number")
    return number


def agent_from_sentinelone(raw: Any, position: int = 0) -> Agent:
    """Map one agent object of ``GET /web/api/v2.1/agents`` to an ``Agent``; ``VendorDataError`` if malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} agent #{position + 1} is not an object")
    agent_id = raw.get("id")
    if isinstance(agent_id, bool) or not isinstance(agent_id, int | str) or str(agent_id).strip() == "":
        raise VendorDataError(f"{LABEL} agent #{position + 1} has no usable id")
    where = f"{LABEL} agent {agent_id}"
    attributes: dict[str, AttributeValue] = {}
    state = optional_str(raw, "operationalState", where)
    if state is not None and state.strip():
        attributes["sentinelOne:operationalState"] = state
    threats = _optional_count(raw, "activeThreats", where)
    if threats is not None:
        attributes["sentinelOne:activeThreats"] = threats
    version = optional_str(raw, "agentVersion", where)
    if version is not None and version.strip():
        attributes["sentinelOne:agentVersion"] = version
    for key, field in BOOLEAN_FIELDS:
        flag = optional_bool(raw, field, where)
        if flag is not None:
            attributes[key] = flag
    last_seen = parse_timestamp(raw.get("lastActiveDate"), "lastActiveDate", where)
    if last_seen is None:
        last_seen = parse_timestamp(raw.get("updatedAt"), "updatedAt", where)
    active = optional_bool(raw, "isActive", where)
    decommissioned = optional_bool(raw, "isDecommissioned", where)
    return Agent(
        vendor=VENDOR,
        id=str(agent_id),
        hostname=optional_str(raw, "computerName", where) or "",
        serial=optional_str(raw, "serialNumber", where),
        attributes=attributes,
        last_seen=last_seen,
        active=True if active is None else active,
        decommissioned=bool(decommissioned),
    )


def _page(body: Any) -> tuple[list[Any], str | None, int | None]:
    """The agents, next cursor and total of one response body."""
    body, data = page_items(body, "data", label=LABEL, path=AGENTS_PATH)
    pagination, cursor = next_pointer(body, "nextCursor", label=LABEL, path=AGENTS_PATH)
    total = pagination.get("totalItems")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = None
    return data, cursor, total


class SentinelOneClient(OwnedClient):
    """Fetches all agents of a SentinelOne console that are not decommissioned (``VendorClient``)."""

    def __init__(
        self,
        url: str,
        api_token: str,
        *,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``url`` is the console URL; ``clock`` (monotonic seconds) times the fetch and the retry budget."""
        if not api_token:
            raise ValueError("SentinelOne needs an API token")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"the SentinelOne page size must be between 1 and {PAGE_SIZE}")
        self.url = normalize_console_url(url)
        self.page_size = page_size
        self.clock = clock
        self._own_client(http_client, timeout)
        self._headers = {"Authorization": f"ApiToken {api_token}", "Accept": "application/json"}
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            secrets=(api_token,),
            monotonic=clock,
        )

    def __repr__(self) -> str:
        return f"SentinelOneClient(url={self.url!r})"

    def verify(self) -> int:
        """One agent that is not decommissioned, on a short retry budget; how many agents the page listed. The
        agent is checked like a synced one, so a console URL that answers something else fails."""
        params = {"limit": str(VERIFY_PAGE_SIZE), "isDecommissioned": "false"}
        body = self._verify_http.get_json(f"{self.url}{AGENTS_PATH}", params=params, headers=self._headers)
        items, _next, _total = _page(body)
        return verified_count(items, agent_from_sentinelone)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every agent with ``isDecommissioned=false``, in listing order; raises on any failure (no partial list)."""
        url = f"{self.url}{AGENTS_PATH}"

        def fetch(cursor: str | None) -> Page:
            params = {"limit": str(self.page_size), "isDecommissioned": "false"}
            if cursor is not None:
                params["cursor"] = cursor
            items, next_cursor, total = _page(self._http.get_json(url, params=params, headers=self._headers))
            return Page(items, next_cursor, total)

        return collect_agents(
            fetch,
            agent_from_sentinelone,
            label=LABEL,
            path=AGENTS_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="cursor",
        )


def build(values: Mapping[str, str]) -> SentinelOneClient:
    """A client from an integration's settings (``url``, ``api_token``)."""
    token = (values.get("api_token") or "").strip()
    if not token:
        raise ValueError("SentinelOne needs an API token")
    return SentinelOneClient(normalize_console_url(values.get("url")), token)


SPEC = VendorSpec(
    id="sentinelone",
    label=LABEL,
    namespace="sentinelOne",
    fields=(
        CredentialField("url", "Console URL", help="e.g. https://example.sentinelone.net"),
        CredentialField("api_token", "API token", secret=True, help="A service user's token with agent view rights"),
    ),
    attributes=(
        KnownAttribute(
            "sentinelOne:operationalState",
            "string",
            OPERATIONAL_STATES,
            description="Agent operational state; na means neither disabled nor corrupted (healthy)",
            hints=dict.fromkeys(("healthy", "enabled", "active", "ok", "normal", "none", "n/a"), "na"),
        ),
        KnownAttribute("sentinelOne:activeThreats", "number", description="Number of active (unresolved) threats"),
        KnownAttribute(
            "sentinelOne:agentVersion", "string", description="Installed agent version, e.g. 22.3.2.23", version=True
        ),
        KnownAttribute("sentinelOne:encryptedApplications", "boolean", description="Whether the disk is encrypted"),
        KnownAttribute("sentinelOne:firewallEnabled", "boolean", description="Whether the host firewall is on"),
        KnownAttribute("sentinelOne:infected", "boolean", description="Whether the agent reports an active infection"),
    ),
    build=build,
)
