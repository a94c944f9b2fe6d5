"""The immutable search structures of the device index: one snapshot per device list, read without locks.

Every device contributes tokens (full MagicDNS name, its first label, hostname, nodeId, id, each address, each
tag with and without ``tag:``) to one sorted array, so a prefix is a contiguous range found with two ``bisect``
calls. A rebuild may be paced (``app.slack.pacing``) so that it does not hold up the requests of its process.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.slack.pacing import RUN, Pace, no_pace, paced_map, paced_sorted
from app.tailnet.models import Device

_DIRECT_RANGE = 2048
"""Prefix ranges up to this many tokens are answered directly; larger ones go through the memo."""
_MEMO_RANKS = 256
"""How many of the smallest ranks a memo entry keeps (covers any ``limit`` up to this)."""
_MEMO_ENTRIES = 2048
"""Memo entries per snapshot at most (a few MB in the worst case)."""
_MAX_CHAR = 0x10FFFF

_WARM_RANGE = 4 * _DIRECT_RANGE
"""One- and two-character prefix ranges bigger than this are computed while a snapshot is built, not by the
first request that types them (up to 3 ms at 50k devices)."""

RangeHeadValue = tuple[tuple[int, ...], bool]
RangeHead = Callable[[int, int], RangeHeadValue]
"""``(lo, hi)`` -> the ``_MEMO_RANKS`` smallest distinct ranks of ``ranks[lo:hi]``, and whether that is all."""


def fold_email(email: str) -> str:
    """The comparison form of an owner's login email."""
    return email.strip().casefold()


def device_tokens(device: Device) -> tuple[str, ...]:
    """The case-folded search tokens of one device, unique and sorted."""
    tokens = {
        device.name.casefold(),
        device.short_name.casefold(),
        device.hostname.casefold(),
        device.node_id.casefold(),
        device.id.casefold(),
    }
    tokens.update(address.casefold() for address in device.addresses)
    for tag in device.tags:
        folded = tag.casefold()
        tokens.add(folded)
        tokens.add(folded.removeprefix("tag:"))
    tokens.discard("")
    return tuple(sorted(tokens))


def _range_head(ranks: list[int], warm: dict[tuple[int, int], RangeHeadValue]) -> RangeHead:
    """A bounded memo of the smallest ranks of big prefix ranges, for one snapshot's ``ranks``.

    ``warm`` holds the ranges computed while the snapshot was built (the short prefixes everyone types first);
    others are computed on first use. ``lru_cache`` is documented as thread-safe (its structure stays coherent
    under concurrent calls), so readers on many threads share it without a lock of ours; it closes over
    ``ranks`` only, not the snapshot.
    """

    @lru_cache(maxsize=_MEMO_ENTRIES)
    def computed(lo: int, hi: int) -> RangeHeadValue:
        unique = sorted(set(ranks[lo:hi]))
        return tuple(unique[:_MEMO_RANKS]), len(unique) <= _MEMO_RANKS

    def head(lo: int, hi: int) -> RangeHeadValue:
        found = warm.get((lo, hi))
        return found if found is not None else computed(lo, hi)

    return head


def _smallest_distinct(ranks: list[int], lo: int, hi: int, pace: Pace) -> RangeHeadValue:
    """What ``head(lo, hi)`` answers, computed a run at a time: the smallest distinct ranks of the whole range
    are among each run's smallest (one ``sorted(set(...))`` of a 50k-token range is a 3 ms C call)."""
    candidates: set[int] = set()
    complete = True
    for start in range(lo, hi, RUN):
        run = sorted(set(ranks[start : min(start + RUN, hi)]))
        complete = complete and len(run) <= _MEMO_RANKS
        candidates.update(run[:_MEMO_RANKS])
        pace(RUN)
    unique = sorted(candidates)
    return tuple(unique[:_MEMO_RANKS]), complete and len(unique) <= _MEMO_RANKS


def _prefix_ranges(keys: list[str], lo: int, hi: int, length: int) -> Iterator[tuple[int, int]]:
    """The ranges of ``keys[lo:hi]`` (sorted) that share their first ``length`` characters, found by bisection."""
    while lo < hi:
        prefix = keys[lo][:length]
        end = bisect_left(keys, prefix + chr(_MAX_CHAR), lo, hi) if len(prefix) == length else lo + 1
        while end < hi and keys[end].startswith(prefix) and len(prefix) == length:
            end += 1  # only tokens that continue with U+10FFFF itself; none in practice
        yield lo, end
        lo = end


def _warm_heads(keys: list[str], ranks: list[int], pace: Pace) -> dict[tuple[int, int], RangeHeadValue]:
    """The memo entries of the big one- and two-character prefix ranges, computed at build time, paced."""
    warm: dict[tuple[int, int], RangeHeadValue] = {}
    for lo, hi in _prefix_ranges(keys, 0, len(keys), 1):
        if hi - lo > _WARM_RANGE:
            warm[(lo, hi)] = _smallest_distinct(ranks, lo, hi, pace)
            for lo2, hi2 in _prefix_ranges(keys, lo, hi, 2):
                if hi2 - lo2 > _WARM_RANGE and (lo2, hi2) != (lo, hi):
                    warm[(lo2, hi2)] = _smallest_distinct(ranks, lo2, hi2, pace)
    return warm


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Immutable search structures over one device list; ``head`` is a thread-safe memo of derived answers."""

    source: tuple[Device, ...]
    devices: tuple[Device, ...]
    tokens: tuple[tuple[str, ...], ...]
    keys: list[str]
    ranks: list[int]
    by_id: dict[str, int]
    by_owner: dict[str, tuple[int, ...]]
    head: RangeHead = field(repr=False)

    @classmethod
    def build(cls, devices: Iterable[Device], pace: Pace = no_pace) -> Snapshot:
        """Sort devices by name and index their tokens; a device id seen twice keeps its last entry.

        ``pace`` is called between small steps (``app.slack.pacing``): a rebuild beside live requests rests.
        """
        source = tuple(devices)
        unique: dict[str, Device] = {}
        for device in source:
            unique[device.id] = device
            pace()
        ordered = tuple(paced_sorted(list(unique.values()), _name_order, pace))
        by_id: dict[str, int] = {}
        owners: dict[str, list[int]] = {}
        flat_keys: list[str] = []
        flat_ranks: list[int] = []
        token_list: list[tuple[str, ...]] = []
        for rank, device in enumerate(ordered):
            pace()
            device_keys = device_tokens(device)
            token_list.append(device_keys)
            by_id.setdefault(device.id, rank)
            owner = fold_email(device.user)
            if owner:
                owners.setdefault(owner, []).append(rank)
            flat_keys.extend(device_keys)
            flat_ranks.extend([rank] * len(device_keys))
        tokens = tuple(token_list)
        for rank, device in enumerate(ordered):
            by_id.setdefault(device.node_id, rank)
            pace()
        # A stable sort by token keeps each token's ranks ascending, i.e. in name order.
        order = paced_sorted(range(len(flat_keys)), flat_keys.__getitem__, pace)
        ranks = paced_map(order, flat_ranks.__getitem__, pace)
        keys = paced_map(order, flat_keys.__getitem__, pace)
        return cls(
            source=source,
            devices=ordered,
            tokens=tokens,
            keys=keys,
            ranks=ranks,
            by_id=by_id,
            by_owner={owner: tuple(owned) for owner, owned in owners.items()},
            head=_range_head(ranks, _warm_heads(keys, ranks, pace)),
        )

    def parts(self) -> list[list[Any]]:
        """Mutable copies of the big containers, for ``pacing.release`` once this snapshot is dropped (the
        snapshot itself stays intact: a reader may still hold it)."""
        return [list(self.source), list(self.devices), list(self.tokens), list(self.keys), list(self.ranks)]

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        """The slice of ``keys`` whose tokens start with ``prefix`` (non-empty, case-folded)."""
        lo = bisect_left(self.keys, prefix)
        last = ord(prefix[-1])
        if last == _MAX_CHAR:
            hi = lo
            while hi < len(self.keys) and self.keys[hi].startswith(prefix):
                hi += 1
            return lo, hi
        return lo, bisect_left(self.keys, prefix[:-1] + chr(last + 1), lo)

    def smallest_ranks(self, lo: int, hi: int, count: int) -> list[int]:
        """The ``count`` smallest distinct device ranks among ``ranks[lo:hi]``, ascending."""
        if count <= 0 or lo >= hi:
            return []
        if hi - lo <= _DIRECT_RANGE:
            return sorted(set(self.ranks[lo:hi]))[:count]
        head, complete = self.head(lo, hi)
        if complete or count <= len(head):
            return list(head[:count])
        return sorted(set(self.ranks[lo:hi]))[:count]

    def matches(self, rank: int, prefix: str) -> bool:
        return any(token.startswith(prefix) for token in self.tokens[rank])


def _name_order(device: Device) -> tuple[str, str, str]:
    return device.name.casefold(), device.name, device.id
