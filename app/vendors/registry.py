"""The vendors accessbot knows: every module in this package that defines ``SPEC: VendorSpec``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import app.vendors as package
from app.vendors.base import VendorSpec

_NOT_VENDORS = {"base", "registry", "models", "sync", "mapping", "integrations", "fakes"}


@cache
def vendors() -> dict[str, VendorSpec]:
    """Vendor id → spec, discovered once."""
    found: dict[str, VendorSpec] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name in _NOT_VENDORS or module.name.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "SPEC", None)
        if isinstance(spec, VendorSpec):
            found[spec.id] = spec
    return dict(sorted(found.items()))


def vendor(vendor_id: str) -> VendorSpec:
    """The spec of ``vendor_id`` (case-insensitive); ``KeyError`` with the known ids otherwise."""
    specs = vendors()
    spec = specs.get(vendor_id.strip().lower())
    if spec is None:
        raise KeyError(f"unknown vendor {vendor_id!r}; known: {', '.join(specs) or 'none'}")
    return spec
