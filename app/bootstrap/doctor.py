"""``accessbot doctor``'s checks, in the order an admin fixes them: the environment, the database, the secret
key, the config and policy files, Slack, the tailnet, the EDR integrations.

Every check reads and never writes: the database is not migrated (an outdated schema is the finding), no key
file is created, nothing is posted to Slack, no attribute is written. Each external call has a short time
budget, and any failure becomes a ``fail`` line with its cause (a check never raises). Checks that need an
earlier one (the tailnet and integrations need a current schema) are skipped with a ``warn`` when it failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet

from app.bootstrap.from_settings import secret_text
from app.bootstrap.oncall import oncall_checks
from app.config.model import Config
from app.config.settings import Settings, get_settings
from app.config.source import ConfigSource
from app.core.checks import Check, Status, count, fail, ok, one_line, warn
from app.core.clock import Clock, utcnow
from app.core.crypto import KEY_FILE_NAME, Cipher, CipherError, load_or_create_key_file
from app.core.errors import ConfigError
from app.core.http import RetryPolicy
from app.db import Database, sqlite_database_path
from app.db.migrate import current_revision, head_revision
from app.db.session import make_engine
from app.posture.lint import lint
from app.posture.policy import PolicyError, parse_policy, read_policy_text
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.errors import AuthenticationError, PermissionDenied, TailnetError
from app.tailnet.protocol import Tailnet
from app.tailnet.tailscale import TailscaleTailnet
from app.vendors.base import VendorAuthError, VendorError
from app.vendors.integrations import IntegrationError, Integrations
from app.vendors.registry import REGISTRY, VendorRegistry

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

TIMEOUT = 5.0
"""Seconds one external call of a check may take (connect and read)."""
TAILNET_RETRY = RetryPolicy(max_attempts=2, budget=10.0, base=0.5, cap=2.0, max_retry_after=5.0, min_attempt=1.0)
TAILNET_SCOPES = "devices:core:read and devices:posture_attributes"
UPGRADE = "run `accessbot db upgrade` (with the same DATABASE_URL)"


@dataclass
class _Findings:
    """The lines so far and what later checks need from earlier ones."""

    lines: list[Check] = field(default_factory=list)
    db: Database | None = None
    schema_current: bool = False
    cipher: Cipher | None = None
    config: Config | None = None

    def add(self, *checks: Check) -> None:
        self.lines.extend(checks)


def _guarded(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    """``run()``, with any unexpected error as one ``fail`` line (doctor reports; it never crashes)."""
    try:
        return run()
    except Exception as exc:
        log.debug("doctor check %s failed", name, exc_info=True)
        return [fail(name, f"unexpected error: {type(exc).__name__}: {one_line(exc)}", "report it with this line")]


# -- database -------------------------------------------------------------------------------------------


def _open_database(url: str) -> Database:
    """The database without creating anything: a missing SQLite file is an error, not a new empty database."""
    path = sqlite_database_path(url)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"no database file at {path}")
        return Database(url)
    return Database(make_engine(url, connect_args={"connect_timeout": int(TIMEOUT)}))


def database_check(settings: Settings, found: _Findings, db: Database | None = None) -> None:
    """Reachable, and at the newest migration."""
    name = "database"
    try:
        found.db = db or _open_database(settings.database_url)
        current = current_revision(found.db.engine)
    except FileNotFoundError as exc:
        found.add(fail(name, str(exc), f"check DATABASE_URL, or create it: {UPGRADE}"))
        return
    except ConfigError as exc:
        found.add(fail(name, str(exc), "fix DATABASE_URL"))
        return
    except Exception as exc:
        cause = one_line(getattr(exc, "orig", None) or exc)
        if sqlite_database_path(settings.database_url) is not None:
            hint = "if the file is damaged, restore it from a backup; else point DATABASE_URL at the right file"
            found.add(fail(name, f"cannot open the SQLite file: {cause}", hint))
        else:
            found.add(
                fail(name, f"cannot connect: {cause}", "check DATABASE_URL: host, port, database, role, password")
            )
        return
    head = head_revision()
    where = found.db.engine.url.render_as_string(hide_password=True)
    if current == head:
        found.schema_current = True
        found.add(ok(name, f"{where} is reachable and at the newest revision ({head})"))
    elif current is None:
        found.add(fail(name, f"{where} is empty (no accessbot tables)", UPGRADE))
    else:
        found.add(fail(name, f"{where} is at revision {current}, this accessbot needs {head}", UPGRADE))


# -- secret key -----------------------------------------------------------------------------------------


def secret_key_check(settings: Settings, found: _Findings) -> None:
    """``ACCESSBOT_SECRET_KEY`` usable, or the key file beside SQLite present and private; never creates one."""
    name = "secret key"
    secret = secret_text(settings.accessbot_secret_key)
    try:
        if secret:
            found.cipher = Cipher.from_secret(secret)
            found.add(ok(name, "ACCESSBOT_SECRET_KEY is set"))
            return
        database = sqlite_database_path(settings.database_url)
    except ConfigError as exc:
        found.add(fail(name, str(exc), "generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))'"))
        return
    if database is None:
        found.add(
            fail(
                name,
                "ACCESSBOT_SECRET_KEY is not set, and with PostgreSQL there is no key file",
                "set ACCESSBOT_SECRET_KEY (the same value in every process) before connecting integrations",
            )
        )
        return
    path = database.parent / KEY_FILE_NAME
    if not path.exists():
        found.add(
            warn(
                name,
                f"no ACCESSBOT_SECRET_KEY and no key file {path} yet",
                "the first `accessbot integrations add` creates it; back it up with the database",
            )
        )
        return
    try:
        found.cipher = Cipher(load_or_create_key_file(path))  # exists: read and checked, never created here
    except ConfigError as exc:
        found.add(fail(name, str(exc), f"fix or restore {path}"))
        return
    found.add(ok(name, f"key file {path}"))


# -- config and policy ----------------------------------------------------------------------------------


def config_checks(settings: Settings, found: _Findings, config: ConfigSource | None = None) -> None:
    """The YAML config valid, and the policy file it names free of lint errors."""
    try:
        source = config or ConfigSource(settings.config_path)
        found.config = source()
    except ConfigError as exc:
        found.add(fail("config", str(exc), "fix the file (see accessbot.example.yml for every key)"))
        return
    if source.path is None:
        found.add(warn("config", "no config file (ACCESSBOT_CONFIG, or accessbot.yml here): no profiles",
                       "write accessbot.yml with your profiles, or set ACCESSBOT_CONFIG"))  # fmt: skip
    else:
        found.add(ok("config", f"{source.path} is valid ({count(len(found.config.profiles), 'profile')})"))
    policy_path = found.config.policy_path(source.path.parent if source.path is not None else None)
    if policy_path is None:
        found.add(ok("policy", "no policy_file configured (no profile requires a posture)"))
        return
    try:
        text = read_policy_text(policy_path)
    except PolicyError as exc:
        found.add(fail("policy", str(exc), "fix policy_file in the config"))
        return
    findings = lint(parse_policy(text, str(policy_path)))
    errors = [f for f in findings if f.level == "error"]
    warnings = len(findings) - len(errors)
    if errors:
        first = errors[0].format(str(policy_path))
        more = f" (and {count(len(errors) - 1, 'more error')})" if len(errors) > 1 else ""
        found.add(fail("policy", f"{first}{more}", f"run `accessbot posture lint {policy_path}`"))
    elif warnings:
        lint_it = f"run `accessbot posture lint {policy_path}`"
        found.add(warn("policy", f"{policy_path}: {count(warnings, 'warning')}", lint_it))
    else:
        found.add(ok("policy", f"{policy_path} lints clean"))


# -- Slack ----------------------------------------------------------------------------------------------


def slack_checks(settings: Settings, found: _Findings, client: WebClient | None = None) -> None:
    """The token, its scopes, the approvers and notify channels (``app.slack.checks``); skipped without a token."""
    token = secret_text(settings.slack_bot_token)
    if client is None and token is None:
        found.add(warn("slack", "SLACK_BOT_TOKEN is not set: the Slack checks are skipped",
                       "set SLACK_BOT_TOKEN (xoxb-…) to check the token, approvers and channels"))  # fmt: skip
        return
    from app.slack import checks  # slack_sdk: only when there is a token to check
    from app.slack.client import slack_client

    web = client or slack_client(token, settings.slack_api_url, timeout=int(TIMEOUT))
    config = found.config or Config()
    found.add(*_guarded("slack", lambda: checks.slack_checks(web, config)))


# -- tailnet --------------------------------------------------------------------------------------------


@contextmanager
def _tailnet(settings: Settings, db: Database, config: Config, clock: Clock) -> Iterator[Tailnet]:
    if not settings.uses_tailscale:
        yield BuiltinTailnet(db, clock=clock, name=config.tailnet.name)
        return
    adapter = TailscaleTailnet(
        db,
        api_url=settings.tailscale_api_url,
        tailnet=settings.tailscale_tailnet,
        api_key=settings.tailscale_api_key,
        oauth_client_id=settings.tailscale_oauth_client_id,
        oauth_client_secret=settings.tailscale_oauth_client_secret,
        clock=clock,
        policy=TAILNET_RETRY,
        timeout=TIMEOUT,
    )
    try:
        yield adapter
    finally:
        adapter.close()


def tailnet_check(settings: Settings, found: _Findings, clock: Clock, tailnet: Tailnet | None = None) -> None:
    """List the devices and read one device's attributes: the two reads the bot's scopes must allow."""
    name = "tailnet"
    if found.db is None or not found.schema_current:
        found.add(warn(name, "not checked: the database check failed", "fix the database first"))
        return
    where = f"Tailscale API {settings.tailscale_api_url}" if settings.uses_tailscale else "the built-in tailnet"
    hint = f"check the Tailscale credentials and that they grant {TAILNET_SCOPES}"
    try:
        with (
            _tailnet(settings, found.db, found.config or Config(), clock)
            if tailnet is None
            else _given(tailnet) as live
        ):
            devices = live.list_devices()
            if not devices:
                found.add(warn(name, f"{where}: reachable, but it has no devices (attribute reads not checked)",
                               "add devices (`accessbot devices add`) or check TAILSCALE_TAILNET"))  # fmt: skip
                return
            live.get_attributes(devices[0].id)
    except (AuthenticationError, PermissionDenied) as exc:
        found.add(fail(name, f"{where} refused: {exc.message}", hint))
        return
    except TailnetError as exc:
        found.add(fail(name, f"{where}: {exc.message}", "check TAILSCALE_API_URL and the network path to it"))
        return
    except ConfigError as exc:
        found.add(fail(name, str(exc), "set the Tailscale credentials as README says"))
        return
    found.add(ok(name, f"{where}: {count(len(devices), 'device')} listed, attributes of {devices[0].name} read"))


@contextmanager
def _given(tailnet: Tailnet) -> Iterator[Tailnet]:
    yield tailnet


# -- EDR integrations -----------------------------------------------------------------------------------


def integration_checks(found: _Findings, vendors: VendorRegistry, clock: Clock) -> None:
    """Each connected vendor account's stored credentials accepted by the vendor (one page of agents)."""
    if found.db is None or not found.schema_current:
        found.add(warn("integrations", "not checked: the database check failed", "fix the database first"))
        return
    # listing needs no key (vendor names are plain); only decrypting does, and that waits for a real one
    cipher = found.cipher or Cipher(Fernet.generate_key())
    service = Integrations(found.db, cipher, clock=clock, vendors=vendors)
    connected = service.list()
    if not connected:
        found.add(ok("integrations", "no EDR integration is connected"))
        return
    for integration in connected:
        name = f"integration {integration.vendor}"
        if found.cipher is None:
            problem = "the stored credentials cannot be decrypted without the secret key"
            found.add(fail(name, problem, "restore ACCESSBOT_SECRET_KEY or the key file (see the secret key line)"))
            continue
        found.add(*_guarded(name, partial(_verify, service, integration.vendor, integration.label)))


def _verify(service: Integrations, vendor: str, label: str) -> list[Check]:
    return [_verified(service, vendor, label)]


def _verified(service: Integrations, vendor: str, label: str) -> Check:
    name = f"integration {vendor}"
    update = f"accessbot integrations update {vendor} with working credentials"
    try:
        client = service.client(vendor)
    except CipherError as exc:
        return fail(name, exc.message, "restore the key the credentials were stored with, or " + update)
    except IntegrationError as exc:
        return fail(name, exc.message, update)
    try:
        listed = client.verify()
    except VendorAuthError as exc:
        return fail(name, exc.message, update)
    except VendorError as exc:
        return fail(name, exc.message, f"check the vendor's URL and the network path to it, or {update}")
    finally:
        client.close()
    agents = "at least one agent" if listed else "no agents yet"
    return ok(name, f"{label} accepted the credentials ({agents})")


# -- all ------------------------------------------------------------------------------------------------


def run_checks(
    settings: Settings | None = None,
    *,
    clock: Clock = utcnow,
    vendors: VendorRegistry = REGISTRY,
    db: Database | None = None,
    config: ConfigSource | None = None,
    slack_client: WebClient | None = None,
    tailnet: Tailnet | None = None,
) -> list[Check]:
    """Every check, in order. Keyword arguments replace the piece they name (tests pass fakes)."""
    try:
        settings = settings or get_settings()
    except ConfigError as exc:
        return [fail("environment", str(exc), "fix the environment variable it names")]
    found = _Findings()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("database", lambda: database_check(settings, found, db)),
        ("secret key", lambda: secret_key_check(settings, found)),
        ("config", lambda: config_checks(settings, found, config)),
        ("slack", lambda: slack_checks(settings, found, slack_client)),
        ("tailnet", lambda: tailnet_check(settings, found, clock, tailnet)),
        ("integrations", lambda: integration_checks(found, vendors, clock)),
        ("on-call", lambda: found.add(*(oncall_checks(settings, found.config) if found.config else []))),
    ]
    try:
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # a check reports; it never ends the run
                log.debug("doctor check %s failed", name, exc_info=True)
                found.add(fail(name, f"unexpected error: {type(exc).__name__}: {one_line(exc)}", "report this line"))
    finally:
        if found.db is not None and db is None:
            found.db.dispose()
    return found.lines


def failed(lines: list[Check]) -> bool:
    """Whether any line is a failure (``doctor`` then exits non-zero; warnings do not count)."""
    return any(line.status is Status.FAIL for line in lines)
