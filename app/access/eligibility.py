"""Device eligibility: which devices a requester may ask a profile's access for (``devices:`` of the profile).

``own`` (the default): only devices the requester owns, i.e. untagged devices whose Tailscale owner is the
requester's login (``app.access.identity``); a tagged device is owned by its tags, not by the person who added it.
``own_or_tagged: [tag:x, ...]``: own devices plus devices carrying any listed tag. ``any``: every device.

Pure functions: the picker, the submission check and the check before the attribute write all ask these.
"""

from __future__ import annotations

from app.config.identities import fold
from app.config.profiles import OwnOrTagged, Profile
from app.tailnet.models import Device

UNKNOWN_LOGIN = (
    "I cannot tell your Tailscale login (Slack shares no email for you), so I cannot tell which devices are yours. "
    "Ask an accessbot admin to run: accessbot users link {user_id} YOUR_TAILSCALE_LOGIN"
)


def allowed_tags(profile: Profile) -> tuple[str, ...]:
    """The tags whose devices anyone may request ``profile`` for (folded); empty unless ``own_or_tagged``."""
    scope = profile.devices
    return tuple(fold(t) for t in scope.own_or_tagged) if isinstance(scope, OwnOrTagged) else ()


def any_device(profile: Profile) -> bool:
    """Whether ``profile`` may be requested for every device."""
    return profile.devices == "any"


def is_own(device: Device, login: str | None) -> bool:
    """Whether ``device`` belongs to ``login``: untagged and registered by that Tailscale user."""
    return bool(login) and not device.tags and bool(device.user) and fold(device.user) == fold(login or "")


def is_eligible(profile: Profile, device: Device, login: str | None) -> bool:
    """Whether a requester with ``login`` may request ``profile`` for ``device``."""
    if any_device(profile) or is_own(device, login):
        return True
    tags = allowed_tags(profile)
    return bool(tags) and any(fold(t) in tags for t in device.tags)


def owner_of(device: Device) -> str:
    """Who a device belongs to, in words: its login, or its tags for a tagged device."""
    if device.tags:
        return "the tags " + ", ".join(device.tags)
    return device.user or "nobody (no owner reported)"


def owner_label(device: Device) -> str:
    """What the request stores as the device's owner: its login, or its tags for a tagged device (at most 255)."""
    return (", ".join(device.tags) if device.tags else device.user)[:255]


def device_problem(profile: Profile, device: Device, login: str | None, *, user_id: str) -> str | None:
    """Why the requester (``user_id``, ``login``) may not request ``profile`` for ``device`` (``None``: they may)."""
    if is_eligible(profile, device, login):
        return None
    if not login:
        return UNKNOWN_LOGIN.format(user_id=user_id)
    name = device.short_name or device.name or device.id
    tags = profile.devices.own_or_tagged if isinstance(profile.devices, OwnOrTagged) else ()
    allowed = f"your own devices or devices tagged {', '.join(tags)}" if tags else "your own devices"
    return (
        f"Only {allowed} can be chosen for {profile.label()}; {name} belongs to {owner_of(device)} "
        f"(your Tailscale login is {login})."
    )


def scope_hint(profile: Profile) -> str | None:
    """One line for the device picker saying which devices the profile allows (``None`` for ``any``)."""
    if any_device(profile):
        return None
    if isinstance(profile.devices, OwnOrTagged):
        return f"Your own devices, or devices tagged {', '.join(profile.devices.own_or_tagged)}."
    return "Only your own devices (registered with your Tailscale login) can get this access."
