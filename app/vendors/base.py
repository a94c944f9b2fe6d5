"""What every EDR vendor module provides: a client that fetches a complete snapshot of agents.

Adding a vendor is one module in this package defining ``SPEC: VendorSpec``, plus one line in
``registry.VENDORS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.core.http import RetryPolicy
from app.tailnet.models import AttributeValue


class VendorError(Exception):
    """Base of vendor errors; ``message`` is fit to show an admin (never contains credentials)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VendorAuthError(VendorError):
    """The vendor refused the credentials (401/403): the integration pauses until they change."""


class VendorTransientError(VendorError):
    """Rate limits, 5xx, timeouts or connection errors that outlasted the retries: try again next run."""


class VendorDataError(VendorError):
    """The vendor answered with something that is not what its API documents."""


@dataclass(frozen=True, slots=True)
class Agent:
    """One EDR agent, normalized. ``attributes`` use the vendor's own namespace and values verbatim."""

    vendor: str
    id: str
    hostname: str
    serial: str | None
    attributes: Mapping[str, AttributeValue]
    last_seen: datetime | None = None
    active: bool = True
    decommissioned: bool = False
    mac_addresses: tuple[str, ...] = ()
    """MAC addresses the vendor reports for the machine, as 12 lowercase hex digits (matching after serials)."""


Progress = Callable[[int, int | None], None]
"""Called as pages arrive: (agents so far, total if the vendor tells)."""

VERIFY_RETRY = RetryPolicy(max_attempts=2, budget=10.0, base=0.5, cap=2.0, max_retry_after=5.0, min_attempt=1.0)
"""``verify()`` runs while a person waits (``integrations add``, ``doctor``): one retry, ten seconds in all, and
every attempt's timeouts cut to what is left of them."""
VERIFY_PAGE_SIZE = 1
"""``verify()`` asks for one agent: the answer proves the credentials and the URL without fetching a page of 500."""


class VendorClient(Protocol):
    """Fetches every agent of one vendor account."""

    def fetch_agents(self, progress: Progress | None = None) -> list[Agent]:
        """A complete snapshot of agents; raises ``VendorError`` if any page could not be fetched."""
        ...

    def verify(self) -> int:
        """Fetch ONE page of agents (``VERIFY_PAGE_SIZE``, ``VERIFY_RETRY``) to check the credentials and the URL.

        Returns how many agents that page listed; raises ``VendorAuthError`` when the vendor refuses the
        credentials and another ``VendorError`` for anything else (unreachable, wrong URL, not the vendor's API).
        """
        ...

    def close(self) -> None:
        """Release the HTTP connection pool."""
        ...


@dataclass(frozen=True, slots=True)
class CredentialField:
    """One setting of an integration; ``secret`` ones are encrypted at rest and never shown back."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    help: str = ""


@dataclass(frozen=True, slots=True)
class KnownAttribute:
    """A posture attribute an integration writes: its key, type and, where fixed, its allowed values.

    ``hints`` maps common wrong values to the value meant, for the policy linter (matched ignoring case,
    spaces, ``-`` and ``_``). String similarity alone misleads: Huntress never writes ``Healthy``, and the
    closest allowed spelling, ``Unhealthy``, means the opposite of what a rule comparing to ``Healthy`` wants.
    """

    key: str
    type: str  # "string" | "number" | "boolean"
    values: tuple[str, ...] = ()
    description: str = ""
    version: bool = False  # ordered comparisons allowed (version strings)
    hints: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class AttributeFamily:
    """Attributes named by the customer's own data rather than by accessbot (Fleet's ``fleetPolicy:<name>``,
    one per policy): the integration owns EVERY key starting with ``prefix``, so a sync also deletes the key of a
    name that is gone (a removed policy), and lint accepts any name under it."""

    prefix: str  # "<namespace>:" (e.g. "fleetPolicy:"), optionally followed by the start of a name
    type: str  # "string" | "number" | "boolean"
    description: str = ""

    @property
    def namespace(self) -> str:
        """The namespace the family's keys are in (``fleetPolicy``)."""
        return self.prefix.split(":", 1)[0]


@dataclass(frozen=True)
class VendorSpec:
    """Everything accessbot knows about one vendor."""

    id: str  # CLI and Slack name, e.g. "huntress", "sentinelone"
    label: str  # "Huntress", "SentinelOne"
    namespace: str  # attribute namespace, e.g. "huntress", "sentinelOne"
    fields: tuple[CredentialField, ...]
    attributes: tuple[KnownAttribute, ...]
    build: Callable[[Mapping[str, str]], VendorClient] = field(repr=False)
    default_base_url: str = ""
    families: tuple[AttributeFamily, ...] = ()
    """Attribute families with customer-defined names; their namespaces are written besides ``namespace``."""

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace the sync of this vendor writes: its own, then its families' (without repeats)."""
        return tuple(dict.fromkeys((self.namespace, *(f.namespace for f in self.families))))
