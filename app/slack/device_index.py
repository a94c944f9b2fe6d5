"""An in-memory index of the tailnet's devices for type-ahead search, refreshed by a scheduler job.

Slack's ``external_select`` asks for options on every keystroke and wants an answer within 3 seconds, so
the device picker must never fetch the whole device list per keystroke. ``DeviceIndex`` fetches it, builds
immutable search structures (a snapshot) and swaps them in with one assignment; readers take the current
snapshot with one attribute read and never lock. ``refresh_if_stale`` is the scheduler's device-index job
(``app.scheduler.add_device_job``, every 30 s, in every process that serves Slack). A tailnet with a change
counter (``DeviceGeneration``: the built-in store bumps it in the transaction of every device change) is
refetched only when the counter moved, or once the snapshot is ``counted_max_age`` old as a safety net: a
rebuild holds the GIL for a second or two at 50k devices, which every request of the process would feel.
Any other tailnet (the Tailscale adapter) is refetched once the snapshot is ``max_age`` old, so answers may be
up to ``max_age`` (plus one job interval) old. A tailnet that offers ``index_devices`` (a listing without
the vendor JSON) is listed with it. A request that finds the index never loaded loads it synchronously
(``ensure_loaded``); nothing here starts a thread.

Search is a case-insensitive *prefix* search over the tokens of ``app.slack.device_snapshot`` — O(log n + k),
never a scan of all devices. Results come in name order; the requester's own devices first. A rebuild rests
every couple of milliseconds and keeps the garbage collector out (``app.slack.pacing``).
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from app.core.clock import Clock, utcnow
from app.slack.device_snapshot import Snapshot, device_tokens, fold_email
from app.slack.pacing import Pacer, collector_paused, paced_equal, release
from app.tailnet.models import Device

__all__ = [
    "DeviceGeneration",
    "DeviceIndex",
    "DeviceMatches",
    "DeviceSource",
    "IndexListing",
    "device_tokens",
    "fold_email",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = timedelta(seconds=60)
DEFAULT_COUNTED_MAX_AGE = timedelta(minutes=15)
"""How old a snapshot of a tailnet with a change counter may get before it is refetched anyway."""
DEFAULT_RETRY_AFTER = timedelta(seconds=10)
_TAG_MEMO_ENTRIES = 64
"""Tag sets (one per ``own_or_tagged`` profile) whose device ranks are remembered per snapshot."""
_HEAD = 256
"""How many of a prefix range's smallest ranks are tried first for the allowed devices among them."""


class DeviceSource(Protocol):
    """What the index needs from a ``Tailnet``: the whole device list."""

    def list_devices(self) -> list[Device]:
        """Every device of the tailnet."""
        ...


@runtime_checkable
class DeviceGeneration(Protocol):
    """An optional capability of a ``Tailnet``: a counter that moves with every change of its devices."""

    def device_generation(self) -> int:
        """The current value; equal values mean an unchanged device list."""
        ...


@runtime_checkable
class IndexListing(Protocol):
    """An optional capability of a ``Tailnet``: every device without ``raw``, cheaper than ``list_devices``."""

    def index_devices(self) -> Iterable[Device]:
        """Every device (``raw`` may be empty: the index never reads it), possibly as they are read."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceMatches:
    """Search results: the requester's own devices, then other matching devices; both in name order."""

    mine: list[Device] = field(default_factory=list)
    others: list[Device] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.mine) + len(self.others)

    @property
    def devices(self) -> list[Device]:
        """Own devices followed by the others."""
        return [*self.mine, *self.others]


def _contains(sorted_ranks: Sequence[int], rank: int) -> bool:
    i = bisect_left(sorted_ranks, rank)
    return i < len(sorted_ranks) and sorted_ranks[i] == rank


class DeviceIndex:
    """Devices of a tailnet, held in memory for fast lookups and prefix search.

    ``search``, ``get`` and ``owned_by`` never call the tailnet. The scheduler keeps the data fresh
    (``refresh_if_stale``); a request that may be the first after a start calls ``ensure_loaded``.
    """

    def __init__(
        self,
        tailnet: DeviceSource,
        *,
        max_age: timedelta = DEFAULT_MAX_AGE,
        counted_max_age: timedelta = DEFAULT_COUNTED_MAX_AGE,
        retry_after: timedelta = DEFAULT_RETRY_AFTER,
        clock: Clock = utcnow,
    ) -> None:
        self._tailnet = tailnet
        self._list = tailnet.index_devices if isinstance(tailnet, IndexListing) else tailnet.list_devices
        self._generation = tailnet.device_generation if isinstance(tailnet, DeviceGeneration) else None
        self._max_age = counted_max_age if self._generation is not None else max_age
        self._loaded_generation: int | None = None
        self._retry_after = retry_after
        self._clock = clock
        self._snapshot = Snapshot.build(())
        self._loaded_at: datetime | None = None
        self._failed_at: datetime | None = None
        self._last_error: Exception | None = None
        # One lock, held for a whole fetch-and-build: refreshes run one at a time, and the four fields above
        # are written only under it. Readers need none: each reads one field, and a snapshot never changes.
        self._lock = threading.Lock()
        self._tag_memo: tuple[Snapshot | None, dict[tuple[str, ...], tuple[int, ...]]] = (None, {})

    # -- state -----------------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of devices in the current snapshot."""
        return len(self._snapshot.devices)

    def health(self) -> dict[str, object]:
        """For ``/healthz``: how many devices the index holds and when it was last loaded."""
        loaded = self._loaded_at
        return {"count": self.size, "loaded_at": loaded.isoformat() if loaded else None}

    @property
    def loaded_at(self) -> datetime | None:
        """When the current snapshot's fetch started; ``None`` before the first successful load."""
        return self._loaded_at

    @property
    def last_error(self) -> Exception | None:
        """The error of the last refresh if it failed; ``None`` after a successful one."""
        return self._last_error

    @property
    def is_stale(self) -> bool:
        """Never loaded, or loaded longer than ``max_age`` (``counted_max_age``) ago."""
        loaded_at = self._loaded_at
        return loaded_at is None or self._clock() - loaded_at >= self._max_age

    @property
    def refreshing(self) -> bool:
        """Whether a refresh is running now (on the scheduler's thread or a first load)."""
        return self._lock.locked()

    # -- refreshing --------------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Fetch every device now and swap in a new snapshot; ``True`` on success.

        On failure the old snapshot stays, the error is logged and kept in ``last_error``. Concurrent
        calls run one after the other. An unchanged device list keeps the current snapshot (and its
        warm memo) and only moves ``loaded_at``.
        """
        with self._lock:
            return self._fetch_locked()

    def refresh_if_stale(self) -> bool:
        """The scheduler's job: refresh now if the devices changed or the snapshot is stale; ``True`` if it fetched.

        Does nothing while another refresh runs (single flight; readers keep the old snapshot), nor within
        ``retry_after`` of a failed refresh.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if not self._due() or not self._changed():
                return False
            self._fetch_locked()
            return True
        finally:
            self._lock.release()

    def ensure_loaded(self, timeout: float | None = None) -> bool:
        """Load the devices now if they never were; ``True`` once they are loaded.

        Once loaded this returns at once (and does not refresh: that is the scheduler's job). Before that
        it fetches in the caller's thread, unless a failure is too recent; if another first load is
        running it waits for that one, at most ``timeout`` seconds (``None``: as long as it takes).
        """
        if self._loaded_at is not None:
            return True
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            if self._loaded_at is None and self._due():
                self._fetch_locked()
            return self._loaded_at is not None
        finally:
            self._lock.release()

    def _due(self) -> bool:
        """Not within ``retry_after`` of a failure."""
        return self._failed_at is None or self._clock() - self._failed_at >= self._retry_after

    def _changed(self) -> bool:
        """Never loaded, stale, or the tailnet's change counter moved since the snapshot's fetch."""
        if self.is_stale:
            return True
        if self._generation is None:
            return False
        try:
            return self._generation() != self._loaded_generation
        except Exception as exc:  # the database is away: the refresh itself will fail and say so
            log.debug("could not read the device generation: %s", exc)
            return True

    def _fetch_locked(self) -> bool:
        started = self._clock()
        try:
            # the counter first: a change after this read moves it again, and the next job refetches
            generation = self._generation() if self._generation is not None else None
            with collector_paused():
                pace = Pacer()
                devices = []
                for device in self._list():
                    devices.append(device)
                    pace()
                unchanged = paced_equal(devices, self._snapshot.source, pace)
                snapshot = self._snapshot if unchanged else Snapshot.build(devices, pace)
        except Exception as exc:
            self._last_error = exc
            self._failed_at = self._clock()
            log.warning(
                "device index refresh failed; keeping %d devices loaded at %s: %s",
                self.size,
                self._loaded_at.isoformat() if self._loaded_at else "never",
                exc,
                exc_info=exc,
            )
            return False
        parts = self._snapshot.parts() if snapshot is not self._snapshot else []
        self._snapshot = snapshot
        self._loaded_at = started
        self._loaded_generation = generation
        self._last_error = None
        self._failed_at = None
        log.debug("device index refreshed: %d devices", len(snapshot.devices))
        release(parts, Pacer(check_every=1))  # the old snapshot, freed a slice at a time (not in one 50-90 ms go)
        return True

    # -- reading -----------------------------------------------------------------------------------------

    def get(self, device_id: str) -> Device | None:
        """The device with this id or nodeId, or ``None``."""
        snapshot = self._snapshot
        rank = snapshot.by_id.get(device_id)
        return None if rank is None else snapshot.devices[rank]

    def owned_by(self, email: str) -> list[Device]:
        """The devices whose owner is ``email`` (case-insensitive), in name order."""
        snapshot = self._snapshot
        return [snapshot.devices[rank] for rank in snapshot.by_owner.get(fold_email(email), ())]

    def search(self, query: str, *, owner_email: str | None = None, limit: int = 100) -> DeviceMatches:
        """Devices matching ``query`` by case-insensitive prefix, at most ``limit`` in all.

        ``mine``: devices of ``owner_email`` that match; ``others``: the rest of the matches, without
        those already in ``mine``. Both in name order. An empty query matches every device.
        """
        snapshot = self._snapshot
        if limit <= 0 or not snapshot.devices:
            return DeviceMatches()
        owned = snapshot.by_owner.get(fold_email(owner_email), ()) if owner_email else ()
        prefix = query.strip().casefold()
        if not prefix:
            mine = list(owned[:limit])
            others = self._first_except(len(snapshot.devices), mine, limit - len(mine))
        else:
            lo, hi = snapshot.prefix_range(prefix)
            mine = self._own_matches(snapshot, owned, prefix, lo, hi, limit)
            need = limit - len(mine)
            taken = set(mine)
            candidates = snapshot.smallest_ranks(lo, hi, need + len(mine)) if need > 0 else []
            others = [rank for rank in candidates if rank not in taken][:need]
        return DeviceMatches(
            mine=[snapshot.devices[rank] for rank in mine],
            others=[snapshot.devices[rank] for rank in others],
        )

    def search_eligible(
        self, query: str, *, owner_email: str | None, tags: Sequence[str] = (), limit: int = 100
    ) -> DeviceMatches:
        """Like ``search``, among eligible devices only (``app.access.eligibility``): ``mine`` are the untagged
        devices of ``owner_email``, ``others`` the devices carrying any of ``tags`` (exact, case-insensitive).

        Candidates come from the owner map and the exact tag tokens (O(log n) each, kept per snapshot), never from
        a scan of all devices; a typed prefix is matched against the smaller of the candidates and the prefix range.
        """
        snapshot = self._snapshot
        if limit <= 0 or not snapshot.devices:
            return DeviceMatches()
        owned = snapshot.by_owner.get(fold_email(owner_email), ()) if owner_email else ()
        own = tuple(rank for rank in owned if not snapshot.devices[rank].tags)  # disjoint from the tagged ones
        tagged = self._tagged(snapshot, tuple(sorted({t.casefold() for t in tags})))
        prefix = query.strip().casefold()
        if not prefix:
            mine, others = list(own[:limit]), list(tagged[: max(0, limit - len(own))])
        else:
            lo, hi = snapshot.prefix_range(prefix)
            mine = self._own_matches(snapshot, own, prefix, lo, hi, limit)
            others = _allowed_matches(snapshot, tagged, prefix, lo, hi, limit - len(mine))
        return DeviceMatches(
            mine=[snapshot.devices[rank] for rank in mine],
            others=[snapshot.devices[rank] for rank in others],
        )

    def _tagged(self, snapshot: Snapshot, tags: tuple[str, ...]) -> tuple[int, ...]:
        """The ranks of the devices carrying any of ``tags``, ascending; remembered for the current snapshot."""
        if not tags:
            return ()
        memo = self._tag_memo
        if memo[0] is not snapshot:
            memo = self._tag_memo = (snapshot, {})
        found = memo[1].get(tags)
        if found is None:
            found = tuple(sorted({rank for tag in tags for rank in _token_ranks(snapshot, tag)}))
            if len(memo[1]) < _TAG_MEMO_ENTRIES:
                memo[1][tags] = found
        return found

    @staticmethod
    def _first_except(total: int, skip: list[int], count: int) -> list[int]:
        taken = set(skip)
        out: list[int] = []
        rank = 0
        while len(out) < count and rank < total:
            if rank not in taken:
                out.append(rank)
            rank += 1
        return out

    @staticmethod
    def _own_matches(
        snapshot: Snapshot, owned: tuple[int, ...], prefix: str, lo: int, hi: int, limit: int
    ) -> list[int]:
        """The requester's matching devices: check their own tokens, or the match range if smaller."""
        if not owned or lo >= hi:
            return []
        if len(owned) <= hi - lo:
            mine: list[int] = []
            for rank in owned:
                if snapshot.matches(rank, prefix):
                    mine.append(rank)
                    if len(mine) == limit:
                        break
            return mine
        return [rank for rank in sorted(set(snapshot.ranks[lo:hi])) if _contains(owned, rank)][:limit]


def _token_ranks(snapshot: Snapshot, token: str) -> list[int]:
    """The ranks of the devices having exactly ``token`` (ascending: a token's ranks are kept in name order)."""
    lo = bisect_left(snapshot.keys, token)
    return snapshot.ranks[lo : bisect_right(snapshot.keys, token, lo)]


def _allowed_matches(
    snapshot: Snapshot, allowed: tuple[int, ...], prefix: str, lo: int, hi: int, limit: int
) -> list[int]:
    """The first ``limit`` ranks of ``allowed`` (ascending) whose tokens start with ``prefix`` (range ``lo:hi``).

    Few allowed devices: check their tokens. Many: the range's smallest ranks first (memoized by the snapshot),
    then, only if they hold too few, the smaller of the two sides in full.
    """
    if limit <= 0 or not allowed or lo >= hi:
        return []
    if len(allowed) > _HEAD:
        head = snapshot.smallest_ranks(lo, hi, _HEAD)
        found = [rank for rank in head if _contains(allowed, rank)][:limit]
        if len(found) == limit or len(head) < _HEAD:
            return found
    if len(allowed) <= hi - lo:
        out: list[int] = []
        for rank in allowed:
            if snapshot.matches(rank, prefix):
                out.append(rank)
                if len(out) == limit:
                    break
        return out
    return [rank for rank in sorted(set(snapshot.ranks[lo:hi])) if _contains(allowed, rank)][:limit]
