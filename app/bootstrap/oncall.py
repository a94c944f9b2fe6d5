"""The on-call providers from the settings, and ``accessbot doctor``'s on-call line.

``PAGERDUTY_API_TOKEN`` (``PAGERDUTY_BASE_URL``) and ``OPSGENIE_API_KEY`` (``OPSGENIE_BASE_URL``) make the
adapters; a provider without its token is ``None`` and a profile that auto-approves through it takes the normal
approval path (logged, and warned about by ``doctor``).
"""

from __future__ import annotations

from app.access.oncall import OnCallSchedules
from app.bootstrap.from_settings import secret_text
from app.config.model import Config
from app.config.settings import Settings
from app.core.checks import Check, fail, ok, warn
from app.core.errors import ConfigError
from app.core.http import RetryPolicy
from app.oncall.base import OnCallAuthError, OnCallError
from app.oncall.opsgenie import OpsgenieClient
from app.oncall.pagerduty import PagerDutyClient

CHECK = "on-call"
DOCTOR_RETRY = RetryPolicy(max_attempts=2, budget=10.0, base=0.5, cap=2.0, max_retry_after=5.0, min_attempt=1.0)
TOKENS = {"pagerduty": "PAGERDUTY_API_TOKEN", "opsgenie": "OPSGENIE_API_KEY"}


def oncall_schedules(settings: Settings, *, policy: RetryPolicy | None = None) -> OnCallSchedules:
    """The providers this process has credentials for (``ConfigError`` for a malformed base URL)."""
    extra = {} if policy is None else {"policy": policy}
    token, key = secret_text(settings.pagerduty_api_token), secret_text(settings.opsgenie_api_key)
    try:
        return OnCallSchedules(
            pagerduty=PagerDutyClient(token, settings.pagerduty_base_url, **extra) if token else None,
            opsgenie=OpsgenieClient(key, settings.opsgenie_base_url, **extra) if key else None,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid environment: {exc}; fix PAGERDUTY_BASE_URL or OPSGENIE_BASE_URL") from None


def oncall_checks(settings: Settings, config: Config) -> list[Check]:
    """A line per provider the profiles use: its token missing (warn), refused (fail) or working (ok)."""
    used: dict[str, list[str]] = {}
    for profile in config.profiles:
        for provider in profile.auto_approve.providers if profile.auto_approve else ():
            used.setdefault(provider, []).append(profile.id)
    if not used:
        return []
    try:
        schedules = oncall_schedules(settings, policy=DOCTOR_RETRY)
    except ConfigError as exc:
        return [fail(CHECK, str(exc), "fix PAGERDUTY_BASE_URL / OPSGENIE_BASE_URL")]
    lines: list[Check] = []
    for provider, profiles in used.items():
        client = getattr(schedules, provider)
        named = ", ".join(profiles)
        if client is None:
            detail = f"profiles {named} auto-approve by {provider} on-call, but {TOKENS[provider]} is not set"
            lines.append(warn(CHECK, detail, f"set {TOKENS[provider]}; until then these requests go to approvers"))
            continue
        try:
            client.verify()
        except OnCallAuthError as exc:
            lines.append(fail(CHECK, exc.message, f"check {TOKENS[provider]} (a read-only key is enough)"))
        except OnCallError as exc:
            lines.append(fail(CHECK, exc.message, "check the base URL and that the API is reachable"))
        else:
            lines.append(ok(CHECK, f"{provider} answers; profiles {named} auto-approve by its on-call schedules"))
        finally:
            client.close()
    return lines
