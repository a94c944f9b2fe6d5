"""The composition root: the one module that reads ``Settings`` and builds every service from them.

Entry points (``accessbot serve``/``worker``/``tailnet serve``, gunicorn's ``app.wsgi:application`` and every
CLI command) call ``build()`` and take what they need from the ``Services`` it returns. Everything below this
module receives its collaborators and plain values as arguments, so tests build the same graph with fakes
(``build(settings, db=..., tailnet=..., slack_client=..., clock=...)``).

Services that need something a process may lack are built on first use: the credentials cipher (PostgreSQL
needs ``ACCESSBOT_SECRET_KEY``) and everything Slack. The YAML config is one ``ConfigSource`` shared by every
consumer, so an edit of the file reaches them all.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from app.access.lifecycle import Lifecycle
from app.access.outbox import Outbox
from app.access.service import AccessService
from app.access.transitions import OUTCOMES
from app.config.model import Config
from app.config.settings import Settings, get_settings
from app.config.source import ConfigSource
from app.core.clock import Clock, utcnow
from app.core.crypto import KEY_FILE_NAME, Cipher, load_or_create_key_file
from app.core.errors import ConfigError
from app.core.logs import configure_logging
from app.core.metrics import Metrics, current
from app.core.proxies import TrustedProxies, parse_proxies
from app.db import Database, sqlite_database_path
from app.db.migrate import ensure_current
from app.posture.gate import PolicySource, PostureGate
from app.scheduler import add_access_jobs, add_device_job, add_sync_job, build_scheduler, scheduler_status
from app.slack.client import slack_client
from app.slack.context import SlackContext
from app.slack.device_index import DeviceIndex
from app.slack.directory import SlackDirectory
from app.slack.http_app import ROUTES as SLACK_ROUTES
from app.slack.http_app import events_app
from app.slack.notify import Notifier
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.protocol import Tailnet
from app.tailnet.tailscale import TailscaleTailnet
from app.vendors.integrations import Integrations
from app.vendors.mapping import NamespaceMode
from app.vendors.registry import REGISTRY, VendorRegistry
from app.vendors.sync import SyncRunner
from app.web.health import HealthCheck
from app.web.ops import RouteOf, ops_app
from app.web.server import ServerLimits

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from apscheduler.schedulers.background import BackgroundScheduler
    from slack_bolt import App
    from slack_sdk import WebClient

log = logging.getLogger(__name__)


def _secret(value: SecretStr | None) -> str | None:
    text = value.get_secret_value().strip() if value is not None else ""
    return text or None


@dataclass(frozen=True)
class ListenerOptions:
    """How this process's HTTP listeners serve: limits, ports, the scrape token and trusted proxies."""

    limits: ServerLimits
    port: int
    metrics_port: int | None
    scrape_token: str | None
    trusted_proxies: str


@dataclass(frozen=True)
class SlackOptions:
    """The Slack credentials of this process (HTTP mode needs the signing secret, Socket Mode the app token)."""

    bot_token: str | None
    signing_secret: str | None
    app_token: str | None
    api_url: str

    @property
    def socket_mode(self) -> bool:
        """Socket Mode when an app-level token (``xapp-…``) is set; HTTP mode otherwise."""
        return self.app_token is not None

    def missing(self) -> list[str]:
        """Names of the settings ``accessbot serve`` needs but lacks."""
        needed = {"SLACK_BOT_TOKEN": self.bot_token}
        if not self.socket_mode:
            needed["SLACK_SIGNING_SECRET"] = self.signing_secret
        return [name for name, value in needed.items() if not value]


def cipher_for(settings: Settings) -> Cipher:
    """The cipher of ``ACCESSBOT_SECRET_KEY``, else of the key file beside an SQLite database.

    Raises ``ConfigError`` for PostgreSQL without ``ACCESSBOT_SECRET_KEY`` (no safe place for a key file).
    """
    secret = _secret(settings.accessbot_secret_key)
    if secret:
        return Cipher.from_secret(secret)
    database = sqlite_database_path(settings.database_url)
    if database is None:
        raise ConfigError(
            "ACCESSBOT_SECRET_KEY must be set to encrypt integration credentials when DATABASE_URL is not "
            "SQLite (a Fernet key, or a passphrase of at least 16 characters)"
        )
    return Cipher(load_or_create_key_file(database.parent / KEY_FILE_NAME))


def tailscale_tailnet(
    settings: Settings,
    db: Database,
    *,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> TailscaleTailnet:
    """The Tailscale adapter from ``TAILSCALE_*`` settings; OAuth client credentials win over an API key."""
    return TailscaleTailnet(
        db,
        api_url=settings.tailscale_api_url,
        tailnet=settings.tailscale_tailnet,
        api_key=settings.tailscale_api_key,
        oauth_client_id=settings.tailscale_oauth_client_id,
        oauth_client_secret=settings.tailscale_oauth_client_secret,
        clock=clock,
        sleep=sleep,
        rng=rng,
    )


def tailnet_for(settings: Settings, db: Database, config: Config, *, clock: Clock = utcnow) -> Tailnet:
    """Tailscale credentials present → the Tailscale adapter; otherwise the built-in store."""
    if settings.uses_tailscale:
        return tailscale_tailnet(settings, db, clock=clock)
    return BuiltinTailnet(db, clock=clock, name=config.tailnet.name)


def database(settings: Settings | None = None) -> Database:
    """The database alone, not migrated (``accessbot db`` commands migrate it themselves)."""
    return Database((settings or get_settings()).database_url)


def configured_policy_path(settings: Settings | None = None) -> Path | None:
    """The config's ``policy_file`` (relative paths from the config file's folder), without opening anything else."""
    config = ConfigSource((settings or get_settings()).config_path)
    return config().policy_path(config.path.parent if config.path is not None else None)


class Services:
    """Every service of one process, wired once. Built by ``build()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        config: ConfigSource,
        db: Database,
        tailnet: Tailnet,
        clock: Clock,
        metrics: Metrics,
        vendors: VendorRegistry = REGISTRY,
        slack_client: WebClient | None = None,
    ) -> None:
        self._settings = settings
        self.config = config
        self.db = db
        self.tailnet = tailnet
        self.clock = clock
        self.metrics = metrics
        metrics.declare_outcomes(OUTCOMES)  # the access flow's outcome labels: zeros exported from the start
        self.vendors = vendors
        self._slack_client = slack_client
        self.uses_tailscale = settings.uses_tailscale
        self.listener = ListenerOptions(
            limits=ServerLimits(
                threads=settings.http_threads,
                connection_limit=settings.http_connection_limit,
                backlog=settings.http_backlog,
                idle_timeout=settings.http_idle_timeout,
                read_timeout=settings.http_read_timeout,
                max_body_bytes=settings.http_max_body_bytes,
            ),
            port=settings.port,
            metrics_port=settings.metrics_port,
            scrape_token=_secret(settings.metrics_token),
            trusted_proxies=settings.trusted_proxies,
        )
        self.slack_options = SlackOptions(
            bot_token=_secret(settings.slack_bot_token),
            signing_secret=_secret(settings.slack_signing_secret),
            app_token=_secret(settings.slack_app_token),
            api_url=settings.slack_api_url,
        )

    def rewired(
        self, *, clock: Clock | None = None, slack_client: WebClient | None = None, config: ConfigSource | None = None
    ) -> Services:
        """The same database, tailnet and settings with these pieces replaced (a second view of one process, as
        tests take with another clock or Slack client); services built on first use are built afresh."""
        return Services(
            self._settings,
            config=config or self.config,
            db=self.db,
            tailnet=self.tailnet,
            clock=clock or self.clock,
            metrics=self.metrics,
            vendors=self.vendors,
            slack_client=slack_client or self._slack_client,
        )

    def configure_logging(self) -> None:
        """Log in the format and at the level the settings ask for."""
        configure_logging(self._settings)

    def close(self) -> None:
        """Close the database connections (the end of a CLI command)."""
        self.db.dispose()

    # -- posture --------------------------------------------------------------------------------------

    @cached_property
    def policy(self) -> PolicySource:
        """The tailnet policy file named by the config (re-read when either changes)."""
        config = self.config
        config_dir = config.path.parent if config.path is not None else None
        return PolicySource(lambda: config().policy_path(config_dir))

    # -- EDR sync -------------------------------------------------------------------------------------

    @cached_property
    def cipher(self) -> Cipher:
        """The credentials cipher; ``ConfigError`` when no key can be had (PostgreSQL without a secret)."""
        return cipher_for(self._settings)

    @cached_property
    def integrations(self) -> Integrations:
        """The vendor accounts, their credentials encrypted with ``cipher``."""
        return Integrations(self.db, self.cipher, clock=self.clock, vendors=self.vendors)

    @cached_property
    def sync(self) -> SyncRunner:
        """The EDR sync: vendor namespaces on the built-in tailnet, ``custom:`` keys on a real one."""
        config = self.config
        return SyncRunner(
            self.db,
            self.tailnet,
            self.integrations,
            mode=NamespaceMode.CUSTOM if self.uses_tailscale else NamespaceMode.VENDOR,
            interval=lambda: config().sync_interval,
            clock=self.clock,
        )

    # -- Slack ----------------------------------------------------------------------------------------

    @cached_property
    def slack(self) -> SlackContext:
        """Everything the Slack listeners need (the client from ``SLACK_BOT_TOKEN`` and ``SLACK_API_URL``)."""
        client = self._slack_client or slack_client(self.slack_options.bot_token, self.slack_options.api_url)
        config, clock = self.config, self.clock
        directory = SlackDirectory(client)
        access = AccessService(
            self.db, self.tailnet, config, directory, clock=clock, gate=PostureGate(self.tailnet, self.policy)
        )
        outbox = Outbox(self.db, clock=clock, lease=lambda: config().notification_lease)
        return SlackContext(
            db=self.db,
            tailnet=self.tailnet,
            config=config,
            client=client,
            directory=directory,
            access=access,
            lifecycle=Lifecycle(self.db, self.tailnet, config, clock=clock),
            outbox=outbox,
            notifier=Notifier(client, outbox, access),
            devices=DeviceIndex(self.tailnet, clock=clock),
            clock=clock,
            policy=self.policy,
            sync_runner=lambda: self.sync,
        )

    def bolt_app(self, *, token_verification_enabled: bool = True) -> App:
        """The Bolt app with every listener (``slack_bolt.error.BoltError`` when Slack refuses the token)."""
        from app.slack.bolt_app import build_app  # imports slack_bolt's listener machinery: serving only

        return build_app(
            self.slack,
            signing_secret=self.slack_options.signing_secret,
            token_verification_enabled=token_verification_enabled,
        )

    # -- jobs and operations --------------------------------------------------------------------------

    def scheduler(
        self, *, sweep: bool = True, access: bool = True, sync: bool = True, devices: bool = False
    ) -> BackgroundScheduler:
        """A (not yet started) scheduler with the jobs asked for: the expiry sweep of the built-in store, the
        access lifecycle with outbox delivery (needs Slack), the EDR sync (needs the credentials key; without it
        the sync is off and a warning says why), and this process's device index refresh (a process serving
        Slack runs it even when the shared jobs run elsewhere)."""
        sweep_every = self.config().tailnet.expiry_sweep_interval
        scheduler = build_scheduler(self.tailnet if sweep else None, sweep_every=sweep_every)
        if access:
            ctx = self.slack
            add_access_jobs(scheduler, lifecycle=ctx.lifecycle, deliver=ctx.notifier.deliver)
        if devices:
            add_device_job(scheduler, self.slack.devices.refresh_if_stale)
        if sync:
            try:
                add_sync_job(scheduler, self.sync.run_due)
            except ConfigError as exc:
                log.warning("EDR posture sync is off: %s", exc)
        return scheduler

    def health(self, scheduler: BackgroundScheduler | None = None, *, devices: bool = False) -> HealthCheck:
        """The ``/healthz`` check of this process: the database, its scheduler's jobs and, for the Slack app,
        the device index."""
        check = HealthCheck(self.db.engine, {"scheduler": lambda: scheduler_status(scheduler)})
        if devices:
            check.add("devices", self.slack.devices.health)
        return check

    def ops(
        self, app: WSGIApplication, *, name: str, health: HealthCheck, route: RouteOf | None = None
    ) -> WSGIApplication:
        """``app`` behind ``/healthz`` and ``/metrics`` (``METRICS_TOKEN``), every request counted as ``name``."""
        return ops_app(
            app, name=name, health=health, route=route, metrics=self.metrics, token=self.listener.scrape_token
        )

    def slack_wsgi(self, bolt_app: App, health: HealthCheck | None = None) -> WSGIApplication:
        """The Slack app over HTTP as every listener serves it (signed requests only, ``/healthz`` with the device
        index, ``/metrics``), the outbox backlog reported at each scrape."""
        secret = self.slack_options.signing_secret
        if secret is None:
            raise ConfigError("set SLACK_SIGNING_SECRET to serve Slack over HTTP")
        self.metrics.watch_outbox(self.slack.outbox.pending_count)
        app = events_app(bolt_app, signing_secret=secret)
        return self.ops(app, name="slack", health=health or self.health(devices=True), route=SLACK_ROUTES)

    def trusted_proxies(self) -> TrustedProxies:
        """The reverse proxies whose ``X-Forwarded-For`` the built-in API believes (validated at start)."""
        return TrustedProxies(parse_proxies(self.listener.trusted_proxies))


def build(
    settings: Settings | None = None,
    *,
    clock: Clock = utcnow,
    config: ConfigSource | None = None,
    db: Database | None = None,
    tailnet: Tailnet | None = None,
    slack_client: WebClient | None = None,
    metrics: Metrics | None = None,
    vendors: VendorRegistry = REGISTRY,
    migrate: bool = True,
) -> Services:
    """Build this process's services from ``settings`` (the environment by default).

    The config file is validated first (``ConfigError`` naming file and field); an embedded SQLite database is
    upgraded in place, a PostgreSQL one must be current (``SchemaOutdated`` otherwise). Keyword arguments replace
    the piece they name (tests pass fakes).
    """
    settings = settings or get_settings()
    config = config or ConfigSource(settings.config_path)
    db = db or Database(settings.database_url)
    if migrate:
        ensure_current(db.engine, auto_upgrade=db.dialect == "sqlite")
    tailnet = tailnet or tailnet_for(settings, db, config(), clock=clock)
    return Services(
        settings,
        config=config,
        db=db,
        tailnet=tailnet,
        clock=clock,
        metrics=metrics or current(),
        vendors=vendors,
        slack_client=slack_client,
    )

