"""CrowdStrike Falcon: every host of a CID with its Zero Trust Assessment score (``falcon:ztaScore``).

Auth: OAuth2 client credentials at ``POST {base}/oauth2/token`` (answers **201**, ``expires_in`` 1799 s), through
``app.vendors._oauth.OAuthTokens``: the token is renewed a minute before it runs out, and a cached token the API
refuses (401) is replaced once. The API client needs the scopes **Hosts: Read** and **Zero Trust Assessment:
Read**, and ZTA must be enabled for the CID. Base URLs per cloud (``REGIONS``): us-1, us-2, eu-1, us-gov-1,
us-gov-2; ``base_url`` overrides the region (tests, proxies). CrowdStrike names the tenant's real cloud in the
token answer's ``X-Cs-Region`` header; this client does not follow it (a token of one cloud is refused by another,
which shows as a credentials error naming the region to check).

Listing, per page of the host scroll:

1. ``GET /devices/queries/devices-scroll/v1?limit=5000&offset=<token>`` → ``resources`` (host ids) and
   ``meta.pagination.{offset,total}``; the next page passes the answered ``offset`` and paging ends when it is
   ``""`` or the page is empty (the token lives 2 minutes after use, so pages are fetched back to back).
2. ``POST /devices/entities/devices/v2`` with JSON body ``{"ids": [..]}`` in batches of up to 5000 → host
   details: ``serial_number``, ``mac_address``, ``connection_mac_address``, ``last_seen``, ``hostname``. This is
   operation PostDeviceDetailsV2 (falconpy ``Hosts.get_device_details``: "Supports up to a maximum of 5000 IDs",
   and its docstring calls it the preferred method; gofalcon's ``Hosts.PostDeviceDetailsV2`` sends the same
   ``MsaIdsRequest`` body). The GET form (``?ids=..``, at most 100 ids) would take 50 requests per 5000-host
   page instead of one, and building those long URLs cost most of the sync's CPU (issue 14).
3. ``GET /zero-trust-assessment/entities/assessments/v1?ids=..`` in batches of 100 → ``assessment.overall``.
   Hosts without ZTA data are simply absent; a **404** answer is read as "no scores for these ids", using any
   ``resources`` it carries. Checked: PSFalcon's endpoint table (CrowdStrike/psfalcon) gives this call's
   ``default`` response as ``domain.AssessmentsResponse`` (resources + errors) and only 400/403/429 as
   meta-only replies, and falconpy's tests (``tests/test_zero_trust_assessment.py``) accept 404 from it; that a
   404 means "none of these ids has an assessment" stays UNVERIFIED. The batch maximum is not documented in
   either SDK (UNVERIFIED); 100 ids per request keeps the URL short (the GET host-details limit). The lookups
   of one page are sent four at a time (``MAX_IN_FLIGHT``), each through the account's rate limiter.

Values: ``falcon:ztaScore`` = ``assessment.overall`` (a whole number 0-100), as Tailscale's integration writes it
(VENDORS-MORE §1, Tailscale kb/1289). A host without an assessment, or with ``overall: null``, gets no score (never
0). The serial is the host's ``serial_number``, else the assessment's ``system_serial_number``. MACs (Falcon spells
them ``aa-bb-cc-dd-ee-ff``) from ``mac_address`` and ``connection_mac_address`` go to ``Agent.mac_addresses`` as 12
lowercase hex digits, so the sync can match on MAC after serials, as Tailscale does for CrowdStrike.
A host in ``contained`` state is still an agent (containment is not absence); ``last_seen`` feeds freshness.

Rate limits: 6000 requests a minute per customer account on a sliding window (CrowdStrike's API docs as quoted by
its maintainers in CrowdStrike/gofalcon#364); the client limits itself to that per CID (shared by every client of
one API client id). A 429 carries ``X-RateLimit-RetryAfter`` = Unix epoch seconds (gofalcon#646 added support
for it) and no standard ``Retry-After``: a response hook turns it into ``Retry-After`` seconds so the shared
retry policy waits exactly that long.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from app.core.clock import Clock, utcnow
from app.core.http import Unanswered, describe_error
from app.tailnet.models import AttributeValue
from app.vendors._fields import optional_str, reported_macs
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
    json_error_detail,
    parse_timestamp,
    redact,
    shared_limiter,
    sync_and_verify_http,
)
from app.vendors._oauth import OAuthTokens
from app.vendors.base import (
    VERIFY_PAGE_SIZE,
    Agent,
    CredentialField,
    KnownAttribute,
    Progress,
    VendorAuthError,
    VendorDataError,
    VendorError,
    VendorSpec,
    VendorTransientError,
)

log = logging.getLogger(__name__)

VENDOR = "crowdstrike"
LABEL = "CrowdStrike"
NAMESPACE = "falcon"
ZTA_KEY = "falcon:ztaScore"
REGIONS: Mapping[str, str] = {
    "us-1": "https://api.crowdstrike.com",
    "us-2": "https://api.us-2.crowdstrike.com",
    "eu-1": "https://api.eu-1.crowdstrike.com",
    "us-gov-1": "https://api.laggar.gcw.crowdstrike.com",
    "us-gov-2": "https://api.us-gov-2.crowdstrike.mil",
}
DEFAULT_REGION = "us-1"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a URL path, not a secret)
SCROLL_PATH = "/devices/queries/devices-scroll/v1"
HOSTS_PATH = "/devices/entities/devices/v2"
ZTA_PATH = "/zero-trust-assessment/entities/assessments/v1"
PAGE_SIZE = 5000  # scroll allows up to 10000; 5000 keeps one page's detail requests to 1 + 50
DETAILS_BATCH = 5000  # PostDeviceDetailsV2's maximum
BATCH = 100  # ZTA assessments per GET
MAX_PAGES = 10_000
MAX_IN_FLIGHT = 4
"""Assessment lookups sent at once: far below the account's 6,000 a minute, which the shared limiter keeps anyway."""
RATE_LIMIT = 6000
RATE_WINDOW = 60.5
RETRY_POLICY = VENDOR_RETRY


def base_url_for(region: str | None, base_url: str | None) -> str:
    """``base_url`` if given (no trailing ``/``), else the API host of ``region`` (default us-1)."""
    explicit = (base_url or "").strip().rstrip("/")
    if explicit:
        if "://" not in explicit:
            explicit = f"https://{explicit}"
        parsed = httpx.URL(explicit)
        if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.userinfo:
            raise ValueError("the CrowdStrike base URL must look like https://api.crowdstrike.com")
        return explicit
    name = (region or DEFAULT_REGION).strip().lower() or DEFAULT_REGION
    if name not in REGIONS:
        raise ValueError(f"unknown CrowdStrike region {region!r}; known: {', '.join(REGIONS)}")
    return REGIONS[name]


def _score(zta: Mapping[str, Any] | None, where: str) -> int | None:
    """``assessment.overall`` as an int 0..100; ``None`` when absent or null; ``VendorDataError`` otherwise."""
    if zta is None:
        return None
    assessment = zta.get("assessment")
    if assessment is None:
        return None
    if not isinstance(assessment, dict):
        raise VendorDataError(f"{where}: assessment is not an object")
    overall = assessment.get("overall")
    if overall is None:
        return None
    if isinstance(overall, float) and overall.is_integer():
        overall = int(overall)
    if isinstance(overall, bool) or not isinstance(overall, int) or not 0 <= overall <= 100:
        raise VendorDataError(f"{where}: assessment.overall is {overall!r}, not a score from 0 to 100")
    return overall


def agent_from_falcon(host: Any, zta: Any = None, position: int = 0) -> Agent:
    """One host (``devices/entities/devices/v2``) and its assessment (or ``None``) as an ``Agent``."""
    if not isinstance(host, dict):
        raise VendorDataError(f"{LABEL} host #{position + 1} is not an object")
    aid = host.get("device_id")
    if not isinstance(aid, str) or not aid.strip():
        raise VendorDataError(f"{LABEL} host #{position + 1} has no device_id")
    where = f"{LABEL} host {aid}"
    if zta is not None and not isinstance(zta, dict):
        raise VendorDataError(f"{where}: its assessment is not an object")
    attributes: dict[str, AttributeValue] = {}
    score = _score(zta, where)
    if score is not None:
        attributes[ZTA_KEY] = score
    serial = optional_str(host, "serial_number", where)
    if (serial is None or not serial.strip()) and zta is not None:
        serial = optional_str(zta, "system_serial_number", f"{where} assessment")
    macs = reported_macs(optional_str(host, field, where) for field in ("mac_address", "connection_mac_address"))
    last_seen = parse_timestamp(host.get("last_seen"), "last_seen", where)
    return Agent(
        vendor=VENDOR,
        id=aid,
        hostname=optional_str(host, "hostname", where) or "",
        serial=serial if serial and serial.strip() else None,
        attributes=attributes,
        last_seen=last_seen,
        mac_addresses=macs,
    )


def _batches(ids: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _resources(body: Any, path: str) -> list[Any]:
    if not isinstance(body, dict):
        raise VendorDataError(f"{LABEL} API {path} answered something other than a JSON object")
    resources = body.get("resources")
    if resources is None:
        return []
    if not isinstance(resources, list):
        raise VendorDataError(f"{LABEL} API {path} answered resources that are not a list")
    return resources


def _scroll_page(body: Any) -> tuple[list[str], str | None, int | None]:
    ids = _resources(body, SCROLL_PATH)
    if not all(isinstance(i, str) and i for i in ids):
        raise VendorDataError(f"{LABEL} API {SCROLL_PATH} listed a host id that is not a string")
    pagination = (body.get("meta") or {}).get("pagination") if isinstance(body.get("meta"), dict) else None
    if pagination is not None and not isinstance(pagination, dict):
        raise VendorDataError(f"{LABEL} API {SCROLL_PATH} answered a pagination that is not an object")
    pagination = pagination or {}
    offset = pagination.get("offset")
    if offset is not None and not isinstance(offset, str):
        raise VendorDataError(f"{LABEL} API {SCROLL_PATH} answered an offset that is not a string")
    total = pagination.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = None
    return ids, (offset or None) if ids else None, total


def retry_after_hook(wall_clock: Clock) -> Callable[[httpx.Response], None]:
    """A response hook giving a 429's ``X-RateLimit-RetryAfter`` (epoch seconds) as standard ``Retry-After``."""

    def hook(response: httpx.Response) -> None:
        if response.status_code != 429 or "Retry-After" in response.headers:
            return
        raw = response.headers.get("X-RateLimit-RetryAfter", "").strip()
        if not raw.isdigit():
            return
        wait = max(0, int(raw) - int(wall_clock().timestamp()))
        response.headers["Retry-After"] = str(wait)

    return hook


class CrowdStrikeClient(OwnedClient):
    """Fetches every host of a Falcon CID with its ZTA score (``VendorClient``)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        region: str | None = None,
        base_url: str | None = None,
        member_cid: str | None = None,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Monotonic = time.monotonic,
        wall_clock: Clock = utcnow,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
        limiter: SlidingWindowLimiter | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        """``clock`` (monotonic seconds) times token lifetimes and retry budgets; ``wall_clock`` reads epochs;
        ``max_in_flight`` assessment lookups are sent at once (1: one after another)."""
        if not client_id or not client_secret:
            raise ValueError("CrowdStrike needs an API client id and secret")
        if not 1 <= page_size <= 10_000:
            raise ValueError("the CrowdStrike page size must be between 1 and 10000")
        if max_in_flight < 1:
            raise ValueError("at least one request must be allowed in flight")
        self.url = base_url_for(region, base_url)
        self.page_size = page_size
        self.max_in_flight = max_in_flight
        self.clock = clock
        self._own_client(http_client, timeout)
        self._client.event_hooks["response"] = [*self._client.event_hooks["response"], retry_after_hook(wall_clock)]
        self._secrets = (client_secret,)
        if limiter is None:
            limiter = shared_limiter(f"{VENDOR}:{self.url}", client_id, RATE_LIMIT, RATE_WINDOW)
        form = {"member_cid": member_cid} if member_cid else {}
        self.tokens = OAuthTokens(
            self._client,
            label=LABEL,
            token_url=f"{self.url}{TOKEN_PATH}",
            client_id=client_id,
            client_secret=client_secret,
            form=form,
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
        return f"CrowdStrikeClient(url={self.url!r})"

    def _get(self, http: VendorHttp, path: str, params: Mapping[str, str | list[str]]) -> Any:
        url = f"{self.url}{path}"
        return self.tokens.call(
            lambda auth: http.get_json(url, params=params, headers={"Accept": "application/json", **auth})  # type: ignore[arg-type]
        )

    def _post(self, http: VendorHttp, path: str, body: Mapping[str, Any]) -> Any:
        url = f"{self.url}{path}"
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        return self.tokens.call(lambda auth: http.post_json(url, body=body, headers={**headers, **auth}))

    def _assessments(self, http: VendorHttp, ids: list[str]) -> list[Any]:
        """ZTA entities for ``ids``; a 404 means none of them has one (the module docstring)."""
        url = f"{self.url}{ZTA_PATH}"

        def request(auth: dict[str, str]) -> list[Any]:
            headers = {"Accept": "application/json", **auth}
            params: Any = {"ids": ids}  # httpx sends a list as repeated ids=
            sent = http.http.send("GET", url, params=params, headers=headers, body_apart=True)
            response = sent.response
            if response.status_code == 404:
                try:
                    return _resources(response.json(), ZTA_PATH)
                except (ValueError, VendorDataError):
                    return []
            if response.is_success:
                try:
                    return _resources(json.loads(sent.body or b""), ZTA_PATH)
                except ValueError:
                    raise VendorDataError(f"{LABEL} API GET {ZTA_PATH} answered a body that is not JSON") from None
            detail = json_error_detail(response)
            text = redact(f"HTTP {response.status_code}" + (f": {detail}" if detail else ""), self._secrets)
            if response.status_code in (401, 403):
                raise VendorAuthError(f"{LABEL} refused the credentials ({text}); check them and their ZTA scope")
            if sent.stopped is not None or response.status_code >= 500:
                raise VendorTransientError(f"{LABEL} API GET {ZTA_PATH}: {text} {sent.note}".rstrip())
            raise VendorError(f"{LABEL} API GET {ZTA_PATH} failed: {text}")

        try:
            return self.tokens.call(request)
        except Unanswered as exc:
            reason = redact(describe_error(exc.error), self._secrets)
            raise VendorTransientError(
                f"{LABEL} API GET {ZTA_PATH} did not answer after {exc.attempts} attempts ({reason})"
            ) from None

    def _details(self, http: VendorHttp, ids: list[str]) -> list[dict[str, Any]]:
        """Host details joined with their assessments, in the order of ``ids``."""
        hosts: dict[str, Any] = {}
        scores: dict[str, Any] = {}
        for batch in _batches(ids, DETAILS_BATCH):
            for raw in _resources(self._post(http, HOSTS_PATH, {"ids": batch}), HOSTS_PATH):
                if isinstance(raw, dict) and isinstance(raw.get("device_id"), str):
                    hosts[raw["device_id"]] = raw
                else:
                    raise VendorDataError(f"{LABEL} API {HOSTS_PATH} answered a host without a device_id")
        for answered in self._all_assessments(http, list(_batches(ids))):
            for raw in answered:
                if not isinstance(raw, dict) or not isinstance(raw.get("aid"), str):
                    raise VendorDataError(f"{LABEL} API {ZTA_PATH} answered an assessment without an aid")
                scores[raw["aid"]] = raw
        # a host deleted between the scroll and the details is simply gone
        return [{"host": hosts[i], "zta": scores.get(i)} for i in ids if i in hosts]

    def _all_assessments(self, http: VendorHttp, batches: list[list[str]]) -> list[list[Any]]:
        """Each batch's assessments, in batch order, ``max_in_flight`` lookups at once (a page of 5,000 hosts is 50
        lookups, each a round trip); a failure fails them all, and lookups not yet sent are dropped."""
        if self.max_in_flight == 1 or len(batches) < 2:
            return [self._assessments(http, batch) for batch in batches]
        pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix=f"{LABEL}-zta")
        try:
            return list(pool.map(lambda batch: self._assessments(http, batch), batches))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _convert(self, item: Any, position: int) -> Agent:
        return agent_from_falcon(item["host"], item["zta"], position)

    def verify(self) -> int:
        """One host, on a short retry budget, with its details and assessment (proves both scopes)."""
        body = self._get(self._verify_http, SCROLL_PATH, {"limit": str(VERIFY_PAGE_SIZE)})
        ids, _next, _total = _scroll_page(body)
        for position, item in enumerate(self._details(self._verify_http, ids[:VERIFY_PAGE_SIZE])):
            self._convert(item, position)
        return len(ids)

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """Every host with its score, in scroll order; raises on any failure (no partial list)."""

        def fetch(offset: str | None) -> Page:
            params = {"limit": str(self.page_size)}
            if offset is not None:
                params["offset"] = offset
            ids, next_offset, total = _scroll_page(self._get(self._http, SCROLL_PATH, params))
            return Page(self._details(self._http, ids), next_offset, total)

        return collect_agents(
            fetch,
            self._convert,
            label=LABEL,
            path=SCROLL_PATH,
            progress=progress,
            clock=self.clock,
            max_pages=MAX_PAGES,
            pointer_name="scroll offset",
        )


def build(values: Mapping[str, str]) -> CrowdStrikeClient:
    """A client from an integration's settings (``client_id``, ``client_secret``, ``region``, ``base_url``,
    ``member_cid``)."""
    client_id = (values.get("client_id") or "").strip()
    secret = (values.get("client_secret") or "").strip()
    if not client_id or not secret:
        raise ValueError("CrowdStrike needs an API client id and secret")
    return CrowdStrikeClient(
        client_id,
        secret,
        region=values.get("region"),
        base_url=values.get("base_url"),
        member_cid=(values.get("member_cid") or "").strip() or None,
    )


SPEC = VendorSpec(
    id=VENDOR,
    label=LABEL,
    namespace=NAMESPACE,
    fields=(
        CredentialField(
            "client_id", "API client ID", help="An API client with Hosts: Read and Zero Trust Assessment: Read"
        ),
        CredentialField("client_secret", "API client secret", secret=True),
        CredentialField(
            "region", "Cloud region", required=False, help=f"One of {', '.join(REGIONS)} (default {DEFAULT_REGION})"
        ),
        CredentialField("base_url", "API base URL", required=False, help="Overrides the region, e.g. a proxy"),
        CredentialField("member_cid", "Member CID", required=False, help="Flight Control: the child CID to read"),
    ),
    attributes=(
        KnownAttribute(
            ZTA_KEY,
            "number",
            description="Zero Trust Assessment overall score, 0-100 (higher is better); absent without an assessment",
        ),
    ),
    build=build,
    default_base_url=REGIONS[DEFAULT_REGION],
)
