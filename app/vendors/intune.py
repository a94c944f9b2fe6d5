"""Microsoft Intune: every managed device of a tenant from Graph ``GET /v1.0/deviceManagement/managedDevices``.

Auth: Entra ID client credentials at ``POST {login}/{tenant}/oauth2/v2.0/token`` with
``scope={graph}/.default`` (tokens live ~1 h), through ``app.vendors._oauth.OAuthTokens``: renewed a minute
before ``expires_in`` runs out, and a cached token Graph refuses (401 ``InvalidAuthenticationToken``) is replaced
once. The app registration needs the application permission **DeviceManagementManagedDevices.Read.All**,
admin-consented. Clouds (``CLOUDS``): ``global`` (login.microsoftonline.com, graph.microsoft.com) and ``us-gov``
(login.microsoftonline.us, graph.microsoft.us), ``us-gov-dod`` (dod-graph.microsoft.us); ``login_url`` and
``graph_url`` override them (tests, proxies).

Paging: ``$select`` of the fields used and ``$top=1000``, then ``@odata.nextLink`` is followed verbatim until
absent (Graph's paging contract). A nextLink pointing at another host than the Graph URL in use is refused
(``VendorDataError``) so the bearer token never leaves Graph.

Throttling: Intune allows 2000 requests per 20 s per app and tenant (microsoft-graph-docs-contrib
``concepts/throttling-limits.md``); the client limits itself to that and honours ``Retry-After`` on 429; some
Intune routes omit it, and then the shared policy backs off exponentially.

Values, 1:1 with Tailscale's Intune integration (same keys, same enum spellings as Graph): ``intune:complianceState``,
``intune:deviceRegistrationState``, ``intune:managedDeviceOwnerType`` (strings, verbatim, so a value Graph adds later
such as ``unknownFutureValue`` still syncs), ``intune:azureADRegistered``, ``intune:isSupervised``,
``intune:isEncrypted`` (booleans). A ``null`` leaves its attribute unset. Enum domains from msgraph-sdk-python
``models/{compliance_state,device_registration_state,managed_device_owner_type}.py`` (VENDORS-MORE §2).

MACs: ``wiFiMacAddress`` (Intune reports bare hex such as ``3c2c30a1b2c3``; colon or dash forms are accepted
too; the bare-hex spelling itself is UNVERIFIED, so every common spelling is folded) and ``ethernetMacAddress``
go to ``Agent.mac_addresses``. Graph returns ``ethernetMacAddress`` as null in list calls and fills it only in
``GET managedDevices/{id}`` (confirmed: learn.microsoft.com Q&A 1382436, "List managed devices API returns null
for ethernetMacAddress", and the property's own description); this client does not make one request per device
for it, so Ethernet MACs are used only when the listing carries them. ``$top`` above 1000 is UNVERIFIED
(community reports a default page of about 1000), so pages ask for 1000 and any smaller page Graph chooses is
fine because paging follows ``@odata.nextLink`` only. ``lastSyncDateTime`` is ``last_seen``;
Graph's ``0001-01-01T00:00:00Z`` (never synced) counts as unknown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import httpx

from app.core.clock import Clock, utcnow
from app.tailnet.models import AttributeValue
from app.vendors._fields import optional_bool, optional_str, reported_macs
from app.vendors._http import (
    VENDOR_RETRY,
    Monotonic,
    OwnedClient,
    Page,
    RetryPolicy,
    Sleep,
    SlidingWindowLimiter,
    VendorHttp,
    collect_agents,
    page_items,
    parse_timestamp,
    shared_limiter,
    sync_and_verify_http,
    verified_count,
)
from app.vendors._oauth import OAuthTokens
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

VENDOR = "intune"
LABEL = "Intune"
NAMESPACE = "intune"
CLOUDS: Mapping[str, tuple[str, str]] = {
    "global": ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "us-gov": ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "us-gov-dod": ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
}
DEFAULT_CLOUD = "global"
DEVICES_PATH = "/v1.0/deviceManagement/managedDevices"
PAGE_SIZE = 1000
MAX_PAGES = 10_000
RATE_LIMIT = 2000
RATE_WINDOW = 20.5
RETRY_POLICY = VENDOR_RETRY
NEVER_SYNCED = "0001-01-01T00:00:00Z"

COMPLIANCE_STATES = ("unknown", "compliant", "noncompliant", "conflict", "error", "inGracePeriod", "configManager")
REGISTRATION_STATES = (
    "notRegistered",
    "registered",
    "revoked",
    "keyConflict",
    "approvalPending",
    "certificateReset",
    "notRegisteredPendingEnrollment",
    "unknown",
)
OWNER_TYPES = ("unknown", "company", "personal")

STRING_FIELDS: tuple[tuple[str, str], ...] = (
    ("intune:complianceState", "complianceState"),
    ("intune:deviceRegistrationState", "deviceRegistrationState"),
    ("intune:managedDeviceOwnerType", "managedDeviceOwnerType"),
)
BOOLEAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("intune:azureADRegistered", "azureADRegistered"),
    ("intune:isSupervised", "isSupervised"),
    ("intune:isEncrypted", "isEncrypted"),
)
SELECT = ",".join(
    (
        "id",
        "deviceName",
        "serialNumber",
        "wiFiMacAddress",
        "ethernetMacAddress",
        "lastSyncDateTime",
        "operatingSystem",
        *(field for _key, field in STRING_FIELDS),
        *(field for _key, field in BOOLEAN_FIELDS),
    )
)


def _url(text: str | None, default: str, what: str) -> str:
    value = (text or "").strip().rstrip("/") or default
    if "://" not in value:
        value = f"https://{value}"
    parsed = httpx.URL(value)
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.userinfo:
        raise ValueError(f"the Intune {what} must look like {default}")
    return value


def endpoints(cloud: str | None, login_url: str | None = None, graph_url: str | None = None) -> tuple[str, str]:
    """(login URL, Graph URL) of ``cloud`` (default ``global``), each overridable."""
    name = (cloud or DEFAULT_CLOUD).strip().lower() or DEFAULT_CLOUD
    if name not in CLOUDS:
        raise ValueError(f"unknown Intune cloud {cloud!r}; known: {', '.join(CLOUDS)}")
    login, graph = CLOUDS[name]
    return _url(login_url, login, "login URL"), _url(graph_url, graph, "Graph URL")


def agent_from_intune(raw: Any, position: int = 0) -> Agent:
    """One ``managedDevice`` as an ``Agent``; ``VendorDataError`` if malformed."""
    if not isinstance(raw, dict):
        raise VendorDataError(f"{LABEL} device #{position + 1} is not an object")
    device_id = raw.get("id")
    if not isinstance(device_id, str) or not device_id.strip():
        raise VendorDataError(f"{LABEL} device #{position + 1} has no id")
    where = f"{LABEL} device {device_id}"
    attributes: dict[str, AttributeValue] = {}
    for key, field in STRING_FIELDS:
        value = optional_str(raw, field, where)
        if value is not None and value.strip():
            attributes[key] = value
    for key, field in BOOLEAN_FIELDS:
        flag = optional_bool(raw, field, where)
        if flag is not None:
            attributes[key] = flag
    macs = reported_macs(optional_str(raw, field, where) for field in ("wiFiMacAddress", "ethernetMacAddress"))
    synced = raw.get("lastSyncDateTime")
    last_seen = None if synced == NEVER_SYNCED else parse_timestamp(synced, "lastSyncDateTime", where)
    serial = optional_str(raw, "serialNumber", where)
    return Agent(
        vendor=VENDOR,
        id=device_id,
        hostname=optional_str(raw, "deviceName", where) or "",
        serial=serial if serial and serial.strip() else None,
        attributes=attributes,
        last_seen=last_seen,
        mac_addresses=macs,
    )


class IntuneClient(OwnedClient):
    """Fetches every Intune managed device of a tenant (``VendorClient``)."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        cloud: str | None = None,
        login_url: str | None = None,
        graph_url: str | None = None,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        wall_clock: Clock = utcnow,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
        limiter: SlidingWindowLimiter | None = None,
    ) -> None:
        tenant = (tenant_id or "").strip()
        if not tenant or "/" in tenant or "?" in tenant:
            raise ValueError("Intune needs the Entra tenant ID (a GUID or a domain such as contoso.onmicrosoft.com)")
        if not client_id or not client_secret:
            raise ValueError("Intune needs the app registration's client ID and a client secret")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"the Intune page size must be between 1 and {PAGE_SIZE}")
        self.login_url, self.graph_url = endpoints(cloud, login_url, graph_url)
        self.page_size = page_size
        self.clock = clock
        self._own_client(http_client, timeout)
        if limiter is None:
            limiter = shared_limiter(f"{VENDOR}:{tenant}", client_id, RATE_LIMIT, RATE_WINDOW)
        self.tokens = OAuthTokens(
            self._client,
            label=LABEL,
            token_url=f"{self.login_url}/{tenant}/oauth2/v2.0/token",
            client_id=client_id,
            client_secret=client_secret,
            form={"scope": f"{self.graph_url}/.default"},
            policy=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            monotonic=clock,
            wall_clock=wall_clock,
        )
        self._http, self._verify_http = sync_and_verify_http(
            self._client,
            label=LABEL,
            retry=retry or RETRY_POLICY,
            sleep=sleep,
            rng=rng,
            limiter=limiter,
            secrets=(client_secret,),
            wall_clock=wall_clock,
            monotonic=clock,
        )

    def __repr__(self) -> str:
        return f"IntuneClient(graph_url={self.graph_url!r})"

    def _get(self, http: VendorHttp, url: str, params: Mapping[str, str]) -> Any:
        return self.tokens.call(
            lambda auth: http.get_json(url, params=params, headers={"Accept": "application/json", **auth})
        )

    def _page(self, body: Any) -> Page:
        body, value = page_items(body, "value", label=LABEL, path=DEVICES_PATH)
        link = body.get("@odata.nextLink")
        if link is None or link == "":
            return Page(value, None)
        if not isinstance(link, str):
            raise VendorDataError(f"{LABEL} API {DEVICES_PATH} answered an @odata.nextLink that is not a string")
        target, graph = httpx.URL(link), httpx.URL(self.graph_url)
        if (target.scheme, target.host, target.port) != (graph.scheme, graph.host, graph.port):
            raise VendorDataError(f"{LABEL} API {DEVICES_PATH} answered an @odata.nextLink to another host")
        return Page(value, link)

    def _first(self, top: int) -> dict[str, str]:
        return {"$select": SELECT, "$top": str(top)}

    def verify(self) -> int:
        """One managed device, on a short retry budget; how many the page listed."""
        body = self._get(self._verify_http, f"{self.graph_url}{DEVICES_PATH}", self._first(VERIFY_PAGE_SIZE))
        page = self._page(body)
        return verified_count(page.items, agent_from_intune)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every managed device, in listing order; raises on any failure (no partial list)."""

        def fetch(link: str | None) -> Page:
            if link is None:
                body = self._get(self._http, f"{self.graph_url}{DEVICES_PATH}", self._first(self.page_size))
            else:
                # httpx replaces a URL's query with ``params``: pass the nextLink's own query as the params
                target = httpx.URL(link)
                body = self._get(self._http, str(target.copy_with(query=None)), dict(target.params.multi_items()))
            return self._page(body)

        return collect_agents(
            fetch,
            agent_from_intune,
            label=LABEL,
            path=DEVICES_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="@odata.nextLink",
        )


def build(values: Mapping[str, str]) -> IntuneClient:
    """A client from an integration's settings (``tenant_id``, ``client_id``, ``client_secret``, ``cloud``,
    ``login_url``, ``graph_url``)."""
    return IntuneClient(
        values.get("tenant_id") or "",
        (values.get("client_id") or "").strip(),
        (values.get("client_secret") or "").strip(),
        cloud=values.get("cloud"),
        login_url=values.get("login_url"),
        graph_url=values.get("graph_url"),
    )


SPEC = VendorSpec(
    id=VENDOR,
    label=LABEL,
    namespace=NAMESPACE,
    fields=(
        CredentialField("tenant_id", "Tenant ID", help="Entra tenant ID (GUID) or primary domain"),
        CredentialField(
            "client_id",
            "Application (client) ID",
            help="App registration with DeviceManagementManagedDevices.Read.All (application, admin-consented)",
        ),
        CredentialField("client_secret", "Client secret", secret=True),
        CredentialField("cloud", "Cloud", required=False, help=f"One of {', '.join(CLOUDS)} (default {DEFAULT_CLOUD})"),
        CredentialField("login_url", "Login URL", required=False, help="Overrides the cloud's Entra login host"),
        CredentialField("graph_url", "Graph URL", required=False, help="Overrides the cloud's Microsoft Graph host"),
    ),
    attributes=(
        KnownAttribute(
            "intune:complianceState",
            "string",
            COMPLIANCE_STATES,
            description="Intune compliance state of the device",
            hints={
                "notcompliant": "noncompliant",
                "failed": "noncompliant",
                "gracePeriod": "inGracePeriod",
                "ingrace": "inGracePeriod",
                "healthy": "compliant",
            },
        ),
        KnownAttribute("intune:azureADRegistered", "boolean", description="Whether the device is Entra registered"),
        KnownAttribute(
            "intune:deviceRegistrationState",
            "string",
            REGISTRATION_STATES,
            description="Device registration state",
            hints={"unregistered": "notRegistered", "enrolled": "registered", "pending": "approvalPending"},
        ),
        KnownAttribute("intune:isSupervised", "boolean", description="Whether the (Apple) device is supervised"),
        KnownAttribute("intune:isEncrypted", "boolean", description="Whether the device storage is encrypted"),
        KnownAttribute(
            "intune:managedDeviceOwnerType",
            "string",
            OWNER_TYPES,
            description="Ownership: company or personal",
            hints={"corporate": "company", "byod": "personal", "employee": "personal", "organization": "company"},
        ),
    ),
    build=build,
    default_base_url=CLOUDS[DEFAULT_CLOUD][1],
)
