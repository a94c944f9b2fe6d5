"""Jamf Pro: every computer of a Jamf Pro server from ``GET {url}/api/{v4|v3|v1}/computers-inventory``.

Auth is an API client (Jamf Pro 10.49+; Settings > API roles and clients, role privilege **Read Computers**):
``POST {url}/api/oauth/token`` with ``grant_type=client_credentials``, ``client_id``, ``client_secret`` →
``{"access_token", "token_type": "Bearer", "expires_in": 599, "scope"}``. There is no refresh token; the shared
``app.vendors._oauth.OAuthTokens`` caches the token, renews it before ``expires_in`` runs out (a minute early, or
a quarter of its lifetime for short ones) and fetches a new one once if a cached token is refused mid-paging.

Listing: ``section=GENERAL&section=HARDWARE&section=SECURITY&section=OPERATING_SYSTEM&page=N&page-size=S
&sort=id:asc``, 0-based pages until ``(page + 1) * page-size >= totalCount``. Jamf Pro 11.30 added v4 and
deprecated v3 (v1 was deprecated 2025-06-30), so the client asks v4 first and falls back to v3, then v1, on a 404,
remembering the version that answered. v4 renamed ``general.lastContactTime`` to ``general.lastContact``; both are
read. One request at a time (Jamf asks for at most 5 concurrent connections); Jamf Cloud's load balancer cookie
(``APBALANCEID``) is kept by the HTTP client, so paging stays on one node. No rate limit is documented; a 429 or
503 is retried honouring ``Retry-After`` (Jamf Cloud's use of either is unverified).

Attributes, as Tailscale's Jamf Pro integration writes them (kb ``/docs/integrations/jamf-pro``: keys and allowed
values; which inventory field feeds which key is inferred from the names and value sets):

- ``jamfPro:remoteManaged`` ← ``general.remoteManagement.managed`` (boolean)
- ``jamfPro:supervised`` ← ``general.supervised`` (boolean)
- ``jamfPro:firewallEnabled`` ← ``security.firewallEnabled`` (boolean)
- ``jamfPro:fileVaultStatus`` ← ``operatingSystem.fileVault2Status`` (NOT_APPLICABLE, NOT_ENCRYPTED,
  BOOT_ENCRYPTED, SOME_ENCRYPTED, ALL_ENCRYPTED; it is in OPERATING_SYSTEM, not DISK_ENCRYPTION)
- ``jamfPro:SIPEnabled`` ← ``security.sipStatus`` (NOT_COLLECTED, NOT_AVAILABLE, DISABLED, ENABLED; the
  KB lists NOT_COLLECTED as a value, so it is written verbatim like the others)

Field names and enumerations checked against macadmins/jamf-pro-sdk-python ``models/pro/computers.py`` (1793ac5;
the SDK posts to ``/api/v1/oauth/token``, Jamf's own docs to ``/api/oauth/token``, which this client uses).
A JSON ``null`` (or a missing section) leaves its attribute unset. ``hardware.macAddress`` and
``hardware.altMacAddress`` (colon-separated) fill ``Agent.mac_addresses`` as 12 lowercase hex digits; an
all-zero, broadcast or unparseable MAC is dropped (which MACs may match is the sync's rule). Jamf's errors
look like ``{"httpStatus": 404, "errors": [{"code", "description"}]}``; code and description are shown.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from app.core.http import Sent
from app.tailnet.models import AttributeValue
from app.vendors._fields import optional_bool, optional_str, reported_mac
from app.vendors._http import (
    VENDOR_RETRY,
    Monotonic,
    OwnedClient,
    Page,
    RetryPolicy,
    Sleep,
    VendorHttp,
    api_base_url,
    collect_agents,
    json_error_detail,
    page_items,
    parse_timestamp,
    sync_and_verify_http,
    verified_count,
)
from app.vendors._oauth import OAuthTokens
from app.vendors.base import (
    VERIFY_PAGE_SIZE,
    VERIFY_RETRY,
    Agent,
    CredentialField,
    KnownAttribute,
    Progress,
    VendorDataError,
    VendorError,
    VendorSpec,
)

log = logging.getLogger(__name__)

VENDOR = "jamfpro"
LABEL = "Jamf Pro"
OAUTH_PATH = "/api/oauth/token"
VERSIONS = ("v4", "v3", "v1")
SECTIONS = ("GENERAL", "HARDWARE", "SECURITY", "OPERATING_SYSTEM")
PAGE_SIZE = 500
MAX_PAGE_SIZE = 2000
MAX_PAGES = 10_000
RETRY_POLICY = VENDOR_RETRY
EXAMPLE_URL = "https://example.jamfcloud.com"

FILEVAULT_STATUSES = ("ALL_ENCRYPTED", "SOME_ENCRYPTED", "BOOT_ENCRYPTED", "NOT_ENCRYPTED", "NOT_APPLICABLE")
SIP_STATUSES = ("NOT_COLLECTED", "NOT_AVAILABLE", "DISABLED", "ENABLED")


class JamfNotFound(VendorError):
    """A 404: this API version is not on the server (or the URL is not a Jamf Pro server)."""


class _JamfHttp(VendorHttp):
    """``VendorHttp`` whose 404 is a ``JamfNotFound``, so the client can fall back to an older API version."""

    def _failure(self, sent: Sent, path: str) -> VendorError:
        error = super()._failure(sent, path)
        if sent.response.status_code == 404:
            return JamfNotFound(error.message)
        return error


def jamf_error_detail(response: httpx.Response) -> str:
    """``CODE: description`` of Jamf's ``{"httpStatus", "errors": [{"code", "description"}]}``, else the generic."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts: list[str] = []
        for item in body["errors"]:
            if not isinstance(item, dict):
                continue
            text = ": ".join(str(item[k]).strip() for k in ("code", "description") if isinstance(item.get(k), str))
            if text:
                parts.append(text)
        if parts:
            return "; ".join(parts)[:300]
    return json_error_detail(response)


def normalize_server_url(url: str | None) -> str:
    """``https://example.jamfcloud.com[/prefix]`` without a trailing ``/`` or ``/api``; ``https://`` if missing."""
    return api_base_url(
        url,
        malformed=f"the Jamf Pro server URL must look like {EXAMPLE_URL}",
        missing=f"Jamf Pro needs the server URL, e.g. {EXAMPLE_URL}",
        suffixes=("/api/v1", "/api", "/JSSResource"),
    )


def _section(raw: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VendorDataError(f"{where}: {name} is not an object")
    return value


def agent_from_jamf(raw: Any, position: int = 0) -> Agent:
    """Map one computer of ``computers-inventory`` (v1, v3 or v4) to an ``Agent``; ``VendorDataError`` if malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} computer #{position + 1} is not an object")
    computer_id = raw.get("id")
    if isinstance(computer_id, bool) or not isinstance(computer_id, int | str) or not str(computer_id).strip():
        raise VendorDataError(f"{LABEL} computer #{position + 1} has no usable id")
    where = f"{LABEL} computer {computer_id}"
    general = _section(raw, "general", where)
    hardware = _section(raw, "hardware", where)
    security = _section(raw, "security", where)
    system = _section(raw, "operatingSystem", where)
    remote = _section(general, "remoteManagement", f"{where} general")

    attributes: dict[str, AttributeValue] = {}
    flags = (
        ("jamfPro:remoteManaged", remote, "managed"),
        ("jamfPro:supervised", general, "supervised"),
        ("jamfPro:firewallEnabled", security, "firewallEnabled"),
    )
    for key, section, field in flags:
        flag = optional_bool(section, field, where)
        if flag is not None:
            attributes[key] = flag
    for key, section, field in (
        ("jamfPro:fileVaultStatus", system, "fileVault2Status"),
        ("jamfPro:SIPEnabled", security, "sipStatus"),
    ):
        text = optional_str(section, field, where)
        if text is not None and text.strip():
            attributes[key] = text

    macs: list[str] = []
    for field in ("macAddress", "altMacAddress"):
        mac = reported_mac(optional_str(hardware, field, where))
        if mac is not None and mac not in macs:
            macs.append(mac)

    last_seen = None
    for field in ("lastContact", "lastContactTime", "lastCheckIn", "reportDate"):
        last_seen = parse_timestamp(general.get(field), field, where)
        if last_seen is not None:
            break
    return Agent(
        vendor=VENDOR,
        id=str(computer_id),
        hostname=optional_str(general, "name", where) or "",
        serial=optional_str(hardware, "serialNumber", where),
        attributes=attributes,
        last_seen=last_seen,
        mac_addresses=tuple(macs),
    )


def _page(body: Any, path: str) -> tuple[list[Any], int | None]:
    """The computers and ``totalCount`` of one response body."""
    body, results = page_items(body, "results", label=LABEL, path=path)
    total = body.get("totalCount")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise VendorDataError(f"{LABEL} API {path} answered a totalCount that is not a whole number")
    return results, total


def next_page(page: int, count: int, total: int | None, size: int, path: str) -> int | None:
    """The next 0-based page, or ``None`` after the last (``(page + 1) * size >= totalCount``)."""
    if total is None:
        return page + 1 if count >= size else None
    if (page + 1) * size >= total:
        return None
    if count == 0:
        raise VendorDataError(f"{LABEL} API {path} answered an empty page {page} of {total} computers")
    return page + 1


class JamfProClient(OwnedClient):
    """Fetches every computer of a Jamf Pro server with API client credentials (``VendorClient``)."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 60.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
        versions: tuple[str, ...] = VERSIONS,
    ) -> None:
        """``clock`` (monotonic seconds) times the fetch, the retry budget and the token's lifetime."""
        if not client_id or not client_secret:
            raise ValueError("Jamf Pro needs an API client id and client secret")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"the Jamf Pro page size must be between 1 and {MAX_PAGE_SIZE}")
        if not versions:
            raise ValueError("Jamf Pro needs at least one API version to try")
        self.url = normalize_server_url(url)
        self.client_id = client_id
        self.page_size = page_size
        self.clock = clock
        self.versions = versions
        self.version: str | None = None
        """The inventory API version that answered (``None`` until one did)."""
        self._version_lock = threading.Lock()
        self._own_client(http_client, timeout)
        self._base_headers = {"Accept": "application/json"}
        self.tokens, self._verify_tokens = (
            OAuthTokens(
                self._client,
                label=LABEL,
                token_url=f"{self.url}{OAUTH_PATH}",
                client_id=client_id,
                client_secret=client_secret,
                policy=policy,
                sleep=sleep,
                rng=rng,
                monotonic=clock,
            )
            for policy in (retry or RETRY_POLICY, VERIFY_RETRY)
        )
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            describe_error=jamf_error_detail,
            secrets=(client_secret,),
            monotonic=clock,
            http_class=_JamfHttp,
        )

    def __repr__(self) -> str:
        return f"JamfProClient(url={self.url!r}, client_id={self.client_id!r})"

    def _path(self, version: str) -> str:
        return f"/api/{version}/computers-inventory"

    def _get_page(self, version: str, page: int, size: int, *, verify: bool = False) -> Any:
        """One page of one API version, with a valid token (renewed or refetched as ``OAuthTokens`` decides)."""
        url = f"{self.url}{self._path(version)}"
        # section repeats, so the query goes as QueryParams (a str -> str Mapping that keeps repeated keys)
        params = httpx.QueryParams(
            [*(("section", s) for s in SECTIONS), ("page", str(page)), ("page-size", str(size)), ("sort", "id:asc")]
        )
        http, tokens = (self._verify_http, self._verify_tokens) if verify else (self._http, self.tokens)
        return tokens.call(lambda auth: http.get_json(url, params=params, headers={**self._base_headers, **auth}))

    def _first_page(self, size: int, *, verify: bool = False) -> tuple[str, Any]:
        """Page 0 from the newest version the server has (v4, else v3, else v1, on 404s); remembers it."""
        with self._version_lock:
            known = self.version
        candidates = (known,) if known is not None else self.versions
        last: JamfNotFound | None = None
        for version in candidates:
            try:
                body = self._get_page(version, 0, size, verify=verify)
            except JamfNotFound as exc:
                log.info("%s: %s not found, trying an older inventory API", LABEL, self._path(version))
                last = exc
                continue
            with self._version_lock:
                self.version = version
            return version, body
        tried = ", ".join(self._path(v) for v in candidates)
        raise VendorError(
            f"{LABEL} answered 404 for {tried}; check the server URL ({last.message if last else 'not found'})"
        )

    def verify(self) -> int:
        """One computer, on a short retry budget (token included); how many the page listed. The computer is
        checked like a synced one, so a URL that answers something else fails."""
        version, body = self._first_page(VERIFY_PAGE_SIZE, verify=True)
        items, _total = _page(body, self._path(version))
        return verified_count(items, agent_from_jamf)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every computer, page by page (``id`` ascending); raises on any failure (no partial list)."""
        chosen: list[str] = []

        def fetch(token: str | None) -> Page:
            if token is None:
                version, body = self._first_page(self.page_size)
                chosen.append(version)
                number = 0
            else:
                version, number = chosen[0], int(token)
                body = self._get_page(version, number, self.page_size)
            path = self._path(version)
            items, total = _page(body, path)
            following = next_page(number, len(items), total, self.page_size, path)
            return Page(items, None if following is None else str(following), total)

        return collect_agents(
            fetch,
            agent_from_jamf,
            label=LABEL,
            path="/api/{version}/computers-inventory",
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="page",
        )


def build(values: Mapping[str, str]) -> JamfProClient:
    """A client from an integration's settings (``url``, ``client_id``, ``client_secret``)."""
    client_id = (values.get("client_id") or "").strip()
    client_secret = (values.get("client_secret") or "").strip()
    if not client_id or not client_secret:
        raise ValueError("Jamf Pro needs an API client id and client secret")
    return JamfProClient(normalize_server_url(values.get("url")), client_id, client_secret)


SPEC = VendorSpec(
    id="jamfpro",
    label=LABEL,
    namespace="jamfPro",
    fields=(
        CredentialField("url", "Jamf Pro URL", help=f"e.g. {EXAMPLE_URL} or your on-premises server"),
        CredentialField(
            "client_id", "API client id", help="Settings > API roles and clients; role privilege Read Computers"
        ),
        CredentialField("client_secret", "API client secret", secret=True, help="Shown once when generated"),
    ),
    attributes=(
        KnownAttribute("jamfPro:remoteManaged", "boolean", description="Whether the computer is managed by Jamf Pro"),
        KnownAttribute("jamfPro:supervised", "boolean", description="Whether the computer is supervised"),
        KnownAttribute("jamfPro:firewallEnabled", "boolean", description="Whether the macOS firewall is enabled"),
        KnownAttribute(
            "jamfPro:fileVaultStatus",
            "string",
            FILEVAULT_STATUSES,
            description="FileVault disk encryption status",
            hints={
                "encrypted": "ALL_ENCRYPTED",
                "enabled": "ALL_ENCRYPTED",
                "on": "ALL_ENCRYPTED",
                "true": "ALL_ENCRYPTED",
                "unencrypted": "NOT_ENCRYPTED",
                "disabled": "NOT_ENCRYPTED",
                "off": "NOT_ENCRYPTED",
                "partial": "SOME_ENCRYPTED",
            },
        ),
        KnownAttribute(
            "jamfPro:SIPEnabled",
            "string",
            SIP_STATUSES,
            description="System Integrity Protection status (a string, not a boolean)",
            hints={"true": "ENABLED", "on": "ENABLED", "yes": "ENABLED", "false": "DISABLED", "off": "DISABLED"},
        ),
    ),
    build=build,
)
