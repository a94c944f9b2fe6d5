"""Slack-side checks of ``accessbot doctor``: the bot token and its scopes, the approvers, the notify channels.

Read-only: ``auth.test``, ``users.lookupByEmail``/``users.info``, ``usergroups.list``/``usergroups.users.list``
and ``conversations.info``; nothing is ever posted. Slack sends the scopes a token holds in the
``x-oauth-scopes`` header of its answers (comma separated); they are compared with the scopes ``manifest.yml``
asks for. ``conversations.info`` needs ``channels:read`` (``groups:read`` for private channels); without them
the channel check is a warning, not a failure: those scopes serve only this check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from app.config.model import Config
from app.core.checks import Check, count, fail, ok, one_line, warn

BOT_SCOPES: tuple[str, ...] = (
    "commands",
    "chat:write",
    "users:read",
    "users:read.email",
    "im:write",
    "usergroups:read",
)
"""Scopes the bot cannot work without (``manifest.yml``): a token missing one fails the check."""
CHECK_SCOPES: tuple[str, ...] = ("channels:read", "groups:read")
"""Scopes ``manifest.yml`` asks for only so that ``doctor`` can read notify channels (``conversations.info``)."""
POST_ANYWHERE = "chat:write.public"

REINSTALL = "add it under OAuth & Permissions → Bot Token Scopes (or re-import manifest.yml), then reinstall the app"
REFUSED = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "unknown_error")


def _unreachable(name: str, exc: Exception) -> Check:
    return fail(
        name, f"Slack did not answer: {one_line(exc)}", "check the network path to Slack (and SLACK_API_URL if set)"
    )


def granted_scopes(headers: Mapping[str, Any] | None) -> frozenset[str] | None:
    """The scopes of Slack's ``x-oauth-scopes`` answer header; ``None`` when the answer had none."""
    for key, value in (headers or {}).items():
        if key.lower() == "x-oauth-scopes":
            text = ",".join(value) if isinstance(value, list | tuple) else str(value)
            return frozenset(s.strip() for s in text.split(",") if s.strip())
    return None


def token_checks(client: WebClient) -> tuple[list[Check], frozenset[str] | None]:
    """``auth.test`` and the granted scopes: the check lines, and the scopes (``None`` if unknown or refused)."""
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        error = _error(exc)
        hint = (
            "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…) under OAuth & Permissions"
            if error in REFUSED
            else "see Slack's auth.test error codes"
        )
        return [fail("slack token", f"Slack refused the bot token ({error})", hint)], None
    except (SlackClientError, OSError) as exc:
        return [_unreachable("slack token", exc)], None
    who = (
        f"bot {answer.get('user') or answer.get('user_id')} in workspace {answer.get('team') or answer.get('team_id')}"
    )
    lines = [ok("slack token", f"valid: {who}")]
    scopes = granted_scopes(answer.headers)
    if scopes is None:
        lines.append(warn("slack scopes", "Slack did not list the token's scopes (no x-oauth-scopes header)"))
        return lines, None
    missing = [s for s in BOT_SCOPES if s not in scopes]
    unchecked = [s for s in CHECK_SCOPES if s not in scopes]
    if missing:
        lines.append(fail("slack scopes", f"the bot token lacks {', '.join(missing)}", REINSTALL.replace("it", "them")))
    elif unchecked:
        lines.append(
            warn(
                "slack scopes",
                f"the bot's scopes suffice; without {', '.join(unchecked)} doctor cannot read notify channels",
                REINSTALL.replace("it", "them"),
            )
        )
    else:
        lines.append(ok("slack scopes", f"the token has every scope manifest.yml asks for ({len(scopes)} granted)"))
    return lines, scopes


def _where(profiles: Iterable[str]) -> str:
    names = sorted(set(profiles))
    return f"profile{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _users(client: WebClient, wanted: Mapping[str, list[str]], kind: str) -> list[Check]:
    """One line per approver (email or user id) who is not an active member of the workspace."""
    problems: list[Check] = []
    for who, profiles in wanted.items():
        try:
            if kind == "email":
                user = client.users_lookupByEmail(email=who)["user"]
            else:
                user = client.users_info(user=who)["user"]
        except SlackApiError as exc:
            error = _error(exc)
            if error in ("users_not_found", "user_not_found"):
                problems.append(
                    fail(
                        "approvers",
                        f"approver {who} ({_where(profiles)}) is not in the Slack workspace ({error})",
                        f"fix or remove {who} in the approvers of {_where(profiles)}",
                    )
                )
            else:
                hint = REINSTALL if error == "missing_scope" else "see the Slack error code"
                problems.append(fail("approvers", f"cannot look up approver {who}: Slack said {error}", hint))
            continue
        except (SlackClientError, OSError) as exc:
            return [*problems, _unreachable("approvers", exc)]
        if isinstance(user, dict) and user.get("deleted"):
            problems.append(
                fail(
                    "approvers",
                    f"approver {who} ({_where(profiles)}) is a deactivated Slack account",
                    f"replace {who} in the approvers of {_where(profiles)}",
                )
            )
    return problems


def _groups(client: WebClient, wanted: Mapping[str, list[str]]) -> list[Check]:
    """One line per user group that does not exist or has nobody in it."""
    if not wanted:
        return []
    try:
        groups = client.usergroups_list()["usergroups"] or []
        by_handle = {str(g.get("handle") or "").casefold(): g for g in groups if isinstance(g, dict)}
        problems: list[Check] = []
        for handle, profiles in wanted.items():
            group = by_handle.get(handle.casefold())
            if group is None:
                problems.append(
                    fail(
                        "approvers",
                        f"user group @{handle} ({_where(profiles)}) does not exist (or is disabled)",
                        f"fix the handle @{handle} in the approvers of {_where(profiles)}",
                    )
                )
                continue
            members = client.usergroups_users_list(usergroup=group["id"])["users"] or []
            if not members:
                problems.append(
                    warn(
                        "approvers",
                        f"user group @{handle} ({_where(profiles)}) has no members: nobody approves through it",
                        f"add people to @{handle} in Slack",
                    )
                )
        return problems
    except SlackApiError as exc:
        error = _error(exc)
        hint = REINSTALL.replace("it", "usergroups:read") if error == "missing_scope" else "see the Slack error code"
        return [fail("approvers", f"cannot read user groups: Slack said {error}", hint)]
    except (SlackClientError, OSError) as exc:
        return [_unreachable("approvers", exc)]


def approver_checks(client: WebClient, config: Config) -> list[Check]:
    """Every approver email, user id and user group of every profile resolvable; a summary line when all are."""
    emails: dict[str, list[str]] = {}
    ids: dict[str, list[str]] = {}
    handles: dict[str, list[str]] = {}
    for profile in config.profiles:
        for email in profile.approver_emails:
            emails.setdefault(email, []).append(profile.id)
        for user_id in profile.approver_user_ids:
            ids.setdefault(user_id, []).append(profile.id)
        for handle in profile.approver_groups:
            handles.setdefault(handle, []).append(profile.id)
    if not config.profiles:
        return [
            warn("approvers", "no profiles are configured: nobody can request access", "add profiles to the config")
        ]
    problems = [*_users(client, emails, "email"), *_users(client, ids, "id"), *_groups(client, handles)]
    if problems:
        return problems
    counts = f"{count(len(emails), 'email')}, {count(len(ids), 'user id')}, {count(len(handles), 'user group')}"
    return [ok("approvers", f"every approver resolves ({counts} in {count(len(config.profiles), 'profile')})")]


def _channel_check(client: WebClient, channel: str, profiles: list[str], scopes: frozenset[str] | None) -> Check:
    name = f"notify channel {channel}"
    invite = f"run /invite @accessbot in {channel}"
    if not _CHANNEL_ID.fullmatch(channel):
        return warn(
            name,
            f"{channel} ({_where(profiles)}) is not a channel id, so it cannot be checked",
            "set notify_channel to the channel's id (C0123ABCD: channel details → About)",
        )
    try:
        info = client.conversations_info(channel=channel)["channel"] or {}
    except SlackApiError as exc:
        error = _error(exc)
        if error == "channel_not_found":
            return fail(
                name,
                f"the channel does not exist, or it is private and the bot is not in it ({_where(profiles)})",
                f"check notify_channel; for a private channel {invite}",
            )
        if error == "missing_scope":
            return warn(
                name,
                "cannot read the channel: the token lacks channels:read / groups:read",
                f"add those scopes and reinstall the app; meanwhile make sure the bot is in {channel}",
            )
        return fail(name, f"cannot read the channel: Slack said {error}", "see the Slack error code")
    except (SlackClientError, OSError) as exc:
        return _unreachable(name, exc)
    label = f"#{info['name']}" if info.get("name") else channel
    if info.get("is_archived"):
        return fail(
            name, f"{label} is archived ({_where(profiles)})", "unarchive it, or point notify_channel elsewhere"
        )
    if not info.get("is_member"):
        if not info.get("is_private") and scopes is not None and POST_ANYWHERE in scopes:
            return ok(name, f"{label}: the bot is not a member but may post there ({POST_ANYWHERE})")
        return fail(name, f"the bot is not a member of {label} ({_where(profiles)}): grants are not announced", invite)
    return ok(name, f"the bot can post in {label}")


def channel_checks(client: WebClient, config: Config, scopes: frozenset[str] | None) -> list[Check]:
    """Whether the bot can post in each profile's ``notify_channel`` (never by posting: ``conversations.info``)."""
    channels: dict[str, list[str]] = {}
    for profile in config.profiles:
        if profile.notify_channel:
            channels.setdefault(profile.notify_channel.strip(), []).append(profile.id)
    return [_channel_check(client, channel, profiles, scopes) for channel, profiles in channels.items()]


def slack_checks(client: WebClient, config: Config) -> list[Check]:
    """The token first; approvers and channels only when Slack accepted it (else they would repeat its failure)."""
    lines, scopes = token_checks(client)
    if any(line.status == "fail" and line.name == "slack token" for line in lines):
        return lines
    return [*lines, *approver_checks(client, config), *channel_checks(client, config, scopes)]
