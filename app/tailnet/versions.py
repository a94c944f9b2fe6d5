"""Version ordering for ``node:osVersion``/``node:tsVersion`` and Tailscale client version helpers (Tailscale's
device posture docs).

Ordering rule, as documented by Tailscale and refined here where the documentation is silent:

* A version is split into alternating runs of digits and non-digits; each digit run is grouped with the
  non-digit run before it (``"1.40.0-t12"`` → ``("", 1) (".", 40) (".", 0) ("-t", 12)``), like Tailscale's own
  ``cmpver``. Groups are compared in order: the text first (by code point, case-sensitive), then the number.
* A missing part counts as 0: trailing ``.0`` groups are insignificant, so ``1.40`` == ``1.40.0`` == ``1.40.0.0``.
* Beyond that, a missing group sorts before any present one: ``1.40`` < ``1.40.1``.
* Consequently a trailing non-digit part sorts **after** the bare version and before the next release:
  ``1.40.0`` < ``1.40.0-t1234`` < ``1.40.1``. A suffix is treated as a build of that version (Tailscale's
  ``-t<hash>`` suffixes are build identifiers), not as a semver pre-release that would sort before it.
* Digit runs compare numerically with no size limit (``1.100`` > ``1.99``, ``1.040`` == ``1.40``).
"""

from __future__ import annotations

import re

_RUNS = re.compile(r"[0-9]+|[^0-9]+")
_TS_VERSION = re.compile(r"v?([0-9]+\.[0-9]+(?:\.[0-9]+)?)(?:[-+].*)?", re.DOTALL)
_MISSING = ("", 0)


def _groups(version: str) -> list[tuple[str, int]]:
    """``(text, number)`` groups of a version with insignificant trailing ``.0`` groups removed."""
    groups: list[tuple[str, int]] = []
    text = ""
    for run in _RUNS.findall(version.strip()):
        if run[0] in "0123456789":
            groups.append((text, int(run)))
            text = ""
        else:
            text = run
    if text:
        groups.append((text, 0))
    while groups and groups[-1] == (".", 0):
        groups.pop()
    return groups


def compare_versions(a: str, b: str) -> int:
    """Compare two version strings: -1 if ``a`` < ``b``, 0 if equal, 1 if ``a`` > ``b`` (see module doc)."""
    ga, gb = _groups(a), _groups(b)
    length = max(len(ga), len(gb))
    ga += [_MISSING] * (length - len(ga))
    gb += [_MISSING] * (length - len(gb))
    for left, right in zip(ga, gb, strict=True):
        if left != right:
            return -1 if left < right else 1
    return 0


def parse_ts_version(client_version: str) -> str | None:
    """The release part of a Tailscale client version (``1.40.0-t1234-gabc`` → ``1.40.0``), or None.

    Accepts ``major.minor`` or ``major.minor.patch``, an optional leading ``v`` and any suffix that starts
    with ``-`` or ``+``; anything else is not a Tailscale version.
    """
    match = _TS_VERSION.fullmatch(client_version.strip())
    return match.group(1) if match else None


def release_track(version: str) -> str | None:
    """``stable`` for an even minor version (``1.40.x``), ``unstable`` for an odd one (``1.39.x``); None if unparsable.

    Accepts a release (``1.40.0``) or a full client version (``1.40.0-t1234-gabc``).
    """
    release = parse_ts_version(version)
    if release is None:
        return None
    minor = int(release.split(".")[1])
    return "stable" if minor % 2 == 0 else "unstable"
