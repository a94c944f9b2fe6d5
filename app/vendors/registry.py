"""The vendors accessbot knows, listed explicitly.

Adding a vendor: write its module in this package (a client and a ``SPEC: VendorSpec`` with its fields,
attribute catalogue and lint hints), then add its ``SPEC`` to ``VENDORS`` below. Nothing else lists vendors:
the CLI, Slack, the sync and the policy linter all read them from here.

Code that needs vendors takes a ``VendorRegistry`` (``Integrations(..., vendors=...)``); ``REGISTRY`` is the
production one, and tests build their own from the specs they need instead of replacing a global.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from app.vendors import crowdstrike, fleet, huntress, intune, jamfpro, jumpcloud, kandji, kolide, sentinelone, simplemdm
from app.vendors.base import VendorSpec

VENDORS: tuple[VendorSpec, ...] = (
    huntress.SPEC,
    sentinelone.SPEC,
    crowdstrike.SPEC,
    intune.SPEC,
    jamfpro.SPEC,
    kandji.SPEC,
    kolide.SPEC,
    fleet.SPEC,
    jumpcloud.SPEC,
    simplemdm.SPEC,
)


class VendorRegistry(Mapping[str, VendorSpec]):
    """Vendor id → spec, ordered by id; read-only."""

    def __init__(self, specs: Iterable[VendorSpec]) -> None:
        by_id: dict[str, VendorSpec] = {}
        for spec in specs:
            if spec.id in by_id:
                raise ValueError(f"two vendors with the id {spec.id!r}")
            by_id[spec.id] = spec
        self._specs = dict(sorted(by_id.items()))

    def __getitem__(self, vendor_id: str) -> VendorSpec:
        return self._specs[vendor_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"VendorRegistry({', '.join(self._specs)})"

    def vendor(self, vendor_id: str) -> VendorSpec:
        """The spec of ``vendor_id`` (case-insensitive); ``KeyError`` with the known ids otherwise."""
        spec = self._specs.get(vendor_id.strip().lower())
        if spec is None:
            raise KeyError(f"unknown vendor {vendor_id!r}; known: {', '.join(self._specs) or 'none'}")
        return spec


REGISTRY = VendorRegistry(VENDORS)
"""The vendors of ``VENDORS``: what every production component is built with."""


def vendors() -> VendorRegistry:
    """Vendor id → spec of every vendor accessbot knows."""
    return REGISTRY


def vendor(vendor_id: str) -> VendorSpec:
    """The spec of ``vendor_id`` (case-insensitive); ``KeyError`` with the known ids otherwise."""
    return REGISTRY.vendor(vendor_id)
