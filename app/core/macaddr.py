"""MAC addresses as the sync compares them: 12 lowercase hex digits, placeholders and randomised ones left out.

Vendors spell MACs differently (Falcon ``aa-bb-cc-dd-ee-ff``, Jamf/Fleet/JumpCloud ``aa:bb:...``, Intune bare
hex, some ``aabb.ccdd.eeff``); ``normalize_mac`` folds them all to ``aabbccddeeff``.

``matchable_macs`` keeps only addresses that can identify one machine. Left out:

- placeholders: all zeros (an interface without an address, what many agents send when they have none) and
  ``ffffffffffff`` (broadcast);
- group (multicast) addresses: bit 0 of the first octet set; no interface has one as its own address;
- locally administered addresses: bit 1 of the first octet set. They are assigned by software, not burnt into
  hardware: Wi-Fi "private addresses" randomised per network (iOS, Android, Windows, macOS), Docker bridges
  (``02:42:...``), VPN and VM adapters. They change or repeat across machines, so matching on them would join
  posture to the wrong device.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SEPARATORS = re.compile(r"[\s:.\-]")
_ASCII_SEPARATORS = str.maketrans("", "", " \t\r\n\f\v\x1c\x1d\x1e\x1f:.-")
_HEX12 = re.compile(r"[0-9a-f]{12}")

PLACEHOLDER_MACS = frozenset({"000000000000", "ffffffffffff"})


def normalize_mac(text: object) -> str | None:
    """``AA-BB-CC-DD-EE-FF``, ``aa:bb:cc:dd:ee:ff``, ``aabb.ccdd.eeff`` or ``AABBCCDDEEFF`` → ``aabbccddeeff``;
    ``None`` for anything that is not 48 bits of hex (or not text)."""
    if not isinstance(text, str):
        return None
    if len(text) == 12 and _HEX12.fullmatch(text):  # already normalised (agents' MACs are, by contract)
        return text
    folded = text.translate(_ASCII_SEPARATORS).lower()  # C speed: a sync normalises every agent's MACs
    if not folded.isascii():  # other (Unicode) white space, as the pattern's \s would drop it
        folded = _SEPARATORS.sub("", folded)
    return folded if _HEX12.fullmatch(folded) else None


def is_matchable(mac: str) -> bool:
    """Whether a normalised MAC can identify one machine: not a placeholder, group or locally administered one."""
    if mac in PLACEHOLDER_MACS:
        return False
    first = int(mac[:2], 16)
    return not first & 0b01 and not first & 0b10


def matchable_macs(values: Iterable[object]) -> tuple[str, ...]:
    """The distinct, normalised, matchable MACs of ``values`` in their first order (invalid ones dropped)."""
    out: dict[str, None] = {}
    for value in values:
        mac = normalize_mac(value)
        if mac is not None and is_matchable(mac):
            out[mac] = None
    return tuple(out)
