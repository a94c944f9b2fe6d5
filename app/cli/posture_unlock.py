"""``accessbot posture unlock DEVICE --profile ID``: what a profile's attribute would open on a device.

The same answer the approvers see in Slack (``app.posture.unlock``), for an admin at a terminal: the grants and
acls the attribute opens (destinations and ports), those it leaves shut and why, those it would close.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from app.cli.attrs import purge_expired
from app.cli.common import console, fail, opened_services, print_json
from app.posture.policy import Policy, PolicyError, load_policy
from app.posture.unlock import RuleAccess, Unlock, what_unlocks
from app.tailnet.service import resolve_device

NO_POLICY = (
    "no policy to read: pass one (--policy FILE), set policy_file in the config file, or give the Tailscale "
    "credentials the policy_file:read scope"
)


def _where(access: RuleAccess) -> str:
    parts = [", ".join(access.destinations) or "(no destination)"]
    if access.ports:
        parts.append("all ports" if "*" in access.ports else ", ".join(access.ports))
    if access.apps:
        parts.append("app " + ", ".join(access.apps))
    return "  ".join(parts) + f"  (from {', '.join(access.rule.src) or 'anyone'})"


def _section(title: str, mark: str, style: str, rules: tuple[RuleAccess, ...]) -> None:
    if not rules:
        return
    console.print(title, markup=False, highlight=False, soft_wrap=True)
    for access in rules:
        line = Text.assemble("  ", Text(mark, style=style), f" {access.rule.label}  {_where(access)}")
        console.print(line, highlight=False, soft_wrap=True)
        for missing in access.missing:
            console.print(f"      {missing}", markup=False, highlight=False, soft_wrap=True)


def print_unlock(result: Unlock) -> None:
    """The answer as lines: opens, still shut (with the failing conditions), closes."""
    if not result.used:
        console.print(
            f"Nothing in the policy uses {result.key}: the profile opens no access by itself.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    if not result.unlocked:
        console.print("Opens nothing new on this device.", markup=False, highlight=False, soft_wrap=True)
    _section("Opens:", "✓", "green", result.unlocked)
    _section("Still shut:", "✗", "red", result.blocked)
    _section("Closes (while the attribute is set):", "!", "yellow", result.lost)


def _policy(given: Path | None, fetched: Policy | None) -> Policy:
    if given is None:
        if fetched is None:
            fail(NO_POLICY, code=2)
        return fetched
    try:
        return load_policy(given)
    except PolicyError as exc:
        fail(str(exc), code=2)


def unlock_cmd(
    device_ref: Annotated[str, typer.Argument(metavar="DEVICE", help="Device id, nodeId, name or hostname")],
    profile_id: Annotated[str, typer.Option("--profile", metavar="ID", help="The access profile's id")],
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", metavar="FILE", help="Policy file (default: the config's, else the tailnet's)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """List the grants and acls a profile's attribute would open on a device, and what would stay shut."""
    with opened_services() as rt:
        profile = rt.config().profile(profile_id)
        if profile is None:
            known = ", ".join(p.id for p in rt.config().profiles) or "none"
            fail(f"no profile {profile_id!r} in the config (profiles: {known})", code=2)
        policy = _policy(policy_file, rt.unlocks.policy() if policy_file is None else None)
        purge_expired(rt.tailnet)
        device = resolve_device(rt.tailnet, device_ref)
        attributes = rt.tailnet.get_attributes(device.id).attributes
    result = what_unlocks(policy, attributes, profile.attribute, profile.value)
    if as_json:
        out: dict[str, Any] = {
            "device": {"id": device.id, "nodeId": device.node_id, "name": device.name},
            "profile": profile.id,
            "policy": policy.source,
            **result.to_json(),
        }
        print_json(out)
        return
    value = profile.value if isinstance(profile.value, str) else json.dumps(profile.value)
    console.print(
        f"{device.name} ({device.id}): profile {profile.id} sets {profile.attribute} = {value}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    print_unlock(result)


def register(group: typer.Typer) -> None:
    """Add ``unlock`` to the ``posture`` group."""
    group.command("unlock")(unlock_cmd)
