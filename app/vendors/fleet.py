"""Fleet (fleetdm): every host, with its policy results, as ``fleet:present`` and ``fleetPolicy:<name>``.

``GET {base}/api/v1/fleet/hosts?page=N&per_page=500&order_key=id&populate_policies=true`` with
``Authorization: Bearer <API token>`` (an API-only user; the observer role suffices). Pages are 0-based and
carry no token or total: the listing ends at the first page with fewer than ``per_page`` hosts. Ordering by
``id`` keeps pages stable while hosts enrol (new hosts get higher ids); a host listed twice keeps one place.

Written attributes, as Tailscale's own Fleet integration names them (so one policy file works either way):

- ``fleet:present`` = ``true`` on every matched device;
- ``fleetPolicy:<name>`` (boolean) for each policy of the host whose description holds
  ``Tailscale: fleetPolicy:<name>``: ``true`` when the host's ``response`` is ``pass``, ``false`` when it is
  ``fail``; a ``""`` response (not run on the host yet) leaves the key unset. When several of a host's policies
  carry one name (e.g. "FileVault on" for macOS and "LUKS on" for Linux), it is ``true`` only if none fails.

The names come from the customer's policies, so the spec declares them as an attribute family
(``base.AttributeFamily``): the sync owns every ``fleetPolicy:`` key, deletes the key of a policy that lost its
tag or was deleted, and lint accepts any ``fleetPolicy:<name>``. A name must be letters, digits and ``_``
(an attribute key's characters; ``:`` is refused so the ``custom:fleetPolicy_<name>`` form on a real tailnet
stays unambiguous) and short enough that ``custom:fleetPolicy_<name>`` fits the key limit; any other tagged name
is skipped with a warning rather than failing the whole sync.

``primary_mac`` fills ``Agent.mac_addresses`` (12 lowercase hex digits; ``""``, all zeros or an unparsable
value give none). Hosts with status ``mia``/``missing`` count as inactive (they lose to an active duplicate).

Facts checked: fleetdm/fleet ``docs/REST API/rest-api.md`` (List hosts: ``page``, ``per_page``, ``order_key``,
``team_id``, ``populate_policies`` "include policy data for each host"; host fields ``hardware_serial`` (``""``
when unknown), ``primary_mac``, ``seen_time``, ``status`` new|online|offline|mia|missing; policies
``{id, name, query, description, resolution, platform, response: "pass"|"fail", critical}``). UNVERIFIED: a
maximum ``per_page`` (500 is always sent), rate limits outside login (a 429 is backed off, ``Retry-After``
honoured), token expiry for API-only users (a 401/403 pauses the integration), and whether Tailscale writes
``false`` or removes the key for a failing policy (we write ``false``: a rule ``fleetPolicy:x == true`` denies
either way, and ``false`` tells an admin the policy ran and failed).
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from app.tailnet import rules
from app.tailnet.models import AttributeValue
from app.vendors._fields import optional_str, reported_mac
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
    json_error_detail,
    page_items,
    parse_timestamp,
    sync_and_verify_http,
    verified_count,
)
from app.vendors.base import (
    VERIFY_PAGE_SIZE,
    Agent,
    AttributeFamily,
    CredentialField,
    KnownAttribute,
    Progress,
    VendorDataError,
    VendorSpec,
)
from app.vendors.mapping import custom_key

log = logging.getLogger(__name__)

VENDOR = "fleet"
LABEL = "Fleet"
HOSTS_PATH = "/api/v1/fleet/hosts"
PAGE_SIZE = 500
MAX_PAGES = 100_000
RETRY_POLICY = VENDOR_RETRY
PRESENT_KEY = "fleet:present"
POLICY_PREFIX = "fleetPolicy:"
INACTIVE_STATUSES = frozenset({"mia", "missing"})

_TAG = re.compile(r"Tailscale:\s*fleetPolicy:([^\s,;]+)")
_NAME = re.compile(r"[A-Za-z0-9_]+")


def normalize_base_url(url: str | None) -> str:
    """``https://host[/prefix]`` without a trailing ``/`` or ``/api/v1/fleet``; ``https://`` added if missing."""
    return api_base_url(
        url,
        malformed="the Fleet URL must look like https://fleet.example.com",
        missing="Fleet needs the URL of your Fleet server, e.g. https://fleet.example.com",
        suffixes=("/api/v1/fleet", "/api/v1", "/api"),
    )


def _team(value: int | str | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ValueError("the Fleet team id must be a whole number")
    return int(text)


@functools.lru_cache(maxsize=1024)
def policy_key(name: str) -> str | None:
    """``fleetPolicy:<name>`` if ``name`` makes a valid key in both forms (built-in and ``custom:``), else None.

    Remembered: every host lists the same few policies, and their hosts' attributes then share one key object."""
    if not _NAME.fullmatch(name):
        return None
    key = f"{POLICY_PREFIX}{name}"
    return key if len(custom_key(key)) <= rules.MAX_KEY_LENGTH else None


@functools.lru_cache(maxsize=1024)
def tagged_names(description: str) -> tuple[str, ...]:
    """The names of every ``Tailscale: fleetPolicy:<name>`` tag in a policy description (a trailing ``.`` cut);
    remembered, as every host repeats its policies' descriptions."""
    return tuple(match.group(1).rstrip(".") for match in _TAG.finditer(description))


def _policy_results(raw: Mapping[str, Any], where: str, skipped: set[str]) -> dict[str, bool]:
    """``fleetPolicy:<name>`` → passes, from the host's ``policies`` (only tagged policies that ran)."""
    policies = raw.get("policies")
    if policies is None:
        return {}
    if not isinstance(policies, list):
        raise VendorDataError(f"{where}: policies is not a list")
    results: dict[str, bool] = {}
    for n, policy in enumerate(policies):
        if not isinstance(policy, dict):
            raise VendorDataError(f"{where}: policy #{n + 1} is not an object")
        description = optional_str(policy, "description", f"{where} policy #{n + 1}") or ""
        names = tagged_names(description)
        if not names:
            continue
        response = policy.get("response")
        if response is None or response == "":
            continue  # not run on this host yet: not collected
        if response not in ("pass", "fail"):
            raise VendorDataError(f"{where}: policy #{n + 1} has the response {str(response)[:40]!r}, not pass/fail")
        for name in names:
            key = policy_key(name)
            if key is None:
                skipped.add(name)
                continue
            results[key] = results.get(key, True) and response == "pass"
    return results


def agent_from_fleet(raw: Any, position: int = 0, skipped: set[str] | None = None) -> Agent:
    """Map one host of ``GET /api/v1/fleet/hosts`` to an ``Agent``; ``VendorDataError`` if it is malformed.

    Tagged policy names that cannot be keys are added to ``skipped`` (the client warns about them once)."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} host #{position + 1} is not an object")
    host_id = raw.get("id")
    if isinstance(host_id, bool) or not isinstance(host_id, int | str) or str(host_id).strip() == "":
        raise VendorDataError(f"{LABEL} host #{position + 1} has no usable id")
    where = f"{LABEL} host {host_id}"
    attributes: dict[str, AttributeValue] = {PRESENT_KEY: True}
    attributes.update(_policy_results(raw, where, skipped if skipped is not None else set()))
    mac = optional_str(raw, "primary_mac", where)
    normalized = reported_mac(mac) if mac else None
    serial = optional_str(raw, "hardware_serial", where)
    status = optional_str(raw, "status", where)
    return Agent(
        vendor=VENDOR,
        id=str(host_id),
        hostname=optional_str(raw, "display_name", where) or optional_str(raw, "hostname", where) or "",
        serial=serial if serial and serial.strip() else None,
        attributes=attributes,
        last_seen=parse_timestamp(raw.get("seen_time"), "seen_time", where),
        active=status not in INACTIVE_STATUSES,
        mac_addresses=(normalized,) if normalized else (),
    )


def _hosts(body: Any) -> list[Any]:
    body, hosts = page_items(body, "hosts", label=LABEL, path=HOSTS_PATH)
    return hosts


def fleet_error_detail(response: httpx.Response) -> str:
    """Fleet's ``{"message", "errors": [{"name", "reason"}]}``: the message and the reasons."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [body["message"].strip()] if isinstance(body.get("message"), str) and body["message"].strip() else []
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors:
            reason = error.get("reason") if isinstance(error, dict) else None
            if isinstance(reason, str) and reason.strip() and reason.strip() not in parts:
                parts.append(reason.strip())
    return ": ".join(parts)[:300] if parts else json_error_detail(response)


class FleetClient(OwnedClient):
    """Fetches every host of a Fleet server (optionally one team's) with its policy results (``VendorClient``)."""

    def __init__(
        self,
        url: str,
        api_token: str,
        *,
        team_id: int | str | None = None,
        timeout: float = 60.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        limiter: SlidingWindowLimiter | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``url`` is the Fleet server's URL; ``limiter`` is optional (Fleet documents no API rate limit)."""
        if not api_token:
            raise ValueError("Fleet needs an API token")
        if page_size < 1:
            raise ValueError("the Fleet page size must be at least 1")
        self.url = normalize_base_url(url)
        self.team_id = _team(team_id)
        self.page_size = page_size
        self.clock = clock
        self._own_client(http_client, timeout)
        self._headers = {"Authorization": f"Bearer {api_token}", "Accept": "application/json"}
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            limiter=limiter,
            describe_error=fleet_error_detail,
            secrets=(api_token,),
            monotonic=clock,
        )

    def __repr__(self) -> str:
        return f"FleetClient(url={self.url!r}, team_id={self.team_id!r})"

    def _params(self, page: int, per_page: int) -> dict[str, str]:
        params = {"page": str(page), "per_page": str(per_page), "order_key": "id", "populate_policies": "true"}
        if self.team_id is not None:
            params["team_id"] = str(self.team_id)
        return params

    def verify(self) -> int:
        """One host of the first page, on a short retry budget; how many hosts it listed. The host is checked
        like a synced one, so a URL that answers something else fails."""
        body = self._verify_http.get_json(
            f"{self.url}{HOSTS_PATH}", params=self._params(0, VERIFY_PAGE_SIZE), headers=self._headers
        )
        hosts = _hosts(body)
        return verified_count(hosts, agent_from_fleet)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every host, page by page in id order; raises on any failure (no partial list)."""
        url = f"{self.url}{HOSTS_PATH}"
        skipped: set[str] = set()

        def fetch(token: str | None) -> Page:
            page = int(token) if token is not None else 0
            hosts = _hosts(self._http.get_json(url, params=self._params(page, self.page_size), headers=self._headers))
            return Page(hosts, str(page + 1) if len(hosts) >= self.page_size else None)

        agents = collect_agents(
            fetch,
            lambda raw, position: agent_from_fleet(raw, position, skipped),
            label=LABEL,
            path=HOSTS_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="page",
        )
        if skipped:
            log.warning(
                "%s: skipped policies tagged with names that cannot be attribute keys (letters, digits and _ "
                "only, at most %d characters in custom:fleetPolicy_<name>): %s",
                LABEL,
                rules.MAX_KEY_LENGTH,
                ", ".join(sorted(skipped)[:20]),
            )
        return agents


def build(values: Mapping[str, str]) -> FleetClient:
    """A client from an integration's settings (``url``, ``api_token``, optional ``team_id``)."""
    token = (values.get("api_token") or "").strip()
    if not token:
        raise ValueError("Fleet needs an API token")
    return FleetClient(normalize_base_url(values.get("url")), token, team_id=values.get("team_id"))


SPEC = VendorSpec(
    id="fleet",
    label=LABEL,
    namespace="fleet",
    fields=(
        CredentialField("url", "Fleet URL", help="Your Fleet server, e.g. https://fleet.example.com"),
        CredentialField(
            "api_token",
            "API token",
            secret=True,
            help="Token of an API-only user (fleetctl user create --api-only), observer role",
        ),
        CredentialField("team_id", "Team id", required=False, help="Only sync this team's hosts"),
    ),
    attributes=(KnownAttribute(PRESENT_KEY, "boolean", description="The device is a host enrolled in Fleet"),),
    build=build,
    families=(
        AttributeFamily(
            POLICY_PREFIX,
            "boolean",
            description="Result of the Fleet policy whose description holds 'Tailscale: fleetPolicy:<name>' "
            "(true: passes, false: fails)",
        ),
    ),
)
