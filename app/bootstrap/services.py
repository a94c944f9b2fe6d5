"""The composition root: ``Services``, every service of one process, and ``build()``, which wires them from settings.

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
from functools import cached_property
from typing import TYPE_CHECKING

from app.access.lifecycle import Lifecycle
from app.access.oncall import OnCallSchedules
from app.access.outbox import Outbox
from app.access.reconcile import MAX_READS, PACE, Reconciler, ReconcileReport, Removal
from app.access.request_clients import RequestClients
from app.access.service import AccessService
from app.access.transitions import OUTCOMES
from app.config.settings import Settings, get_settings
from app.config.source import ConfigSource
from app.core.clock import Clock, utcnow
from app.core.crypto import Cipher
from app.core.errors import ConfigError
from app.core.logs import configure_logging
from app.core.metrics import Metrics, current
from app.core.proxies import TrustedProxies, parse_proxies
from app.db import Database
from app.db.migrate import ensure_current
from app.posture.gate import PolicySource, PostureGate
from app.posture.unlock_source import FetchedPolicy, UnlockPreview, unlock_policy
from app.request_api.app import RequestApi, routes_with_api, with_request_api
from app.scheduler import (
    add_access_jobs,
    add_device_job,
    add_reconcile_job,
    add_sync_job,
    build_scheduler,
    scheduler_status,
)
from app.slack.client import slack_client
from app.slack.context import SlackContext
from app.slack.device_index import DeviceIndex
from app.slack.directory import SlackDirectory
from app.slack.drift_report import DriftReporter
from app.slack.http_app import ROUTES as SLACK_ROUTES
from app.slack.http_app import events_app
from app.slack.notify import Notifier
from app.tailnet.protocol import Tailnet
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

from app.bootstrap.from_settings import ListenerOptions, SlackOptions, cipher_for, secret_text, tailnet_for
from app.bootstrap.oncall import oncall_schedules

log = logging.getLogger(__name__)


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
            metrics_host=settings.metrics_host,
            scrape_token=secret_text(settings.metrics_token),
            trusted_proxies=settings.trusted_proxies,
        )
        self.slack_options = SlackOptions(
            bot_token=secret_text(settings.slack_bot_token),
            signing_secret=secret_text(settings.slack_signing_secret),
            app_token=secret_text(settings.slack_app_token),
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

    @cached_property
    def unlocks(self) -> UnlockPreview:
        """What a profile's attribute would unlock on a device: from the policy file, or else (on a real tailnet)
        from the tailnet's policy fetched through the adapter and cached."""
        fetch = getattr(self.tailnet, "policy_text", None)
        fetched = FetchedPolicy(fetch) if callable(fetch) else None
        return UnlockPreview(self.tailnet, unlock_policy(self.policy, fetched))

    # -- EDR sync -------------------------------------------------------------------------------------

    @cached_property
    def cipher(self) -> Cipher:
        """The credentials cipher; ``ConfigError`` when no key can be had (PostgreSQL without a secret). A key file
        is created by the first secret stored, never by a command that only reads."""
        return cipher_for(self._settings, create_key_file=False)

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
    def slack_client(self) -> WebClient:
        """The Slack Web API client (``SLACK_BOT_TOKEN``, ``SLACK_API_URL``; bounded retries on 429 and errors)."""
        return self._slack_client or slack_client(self.slack_options.bot_token, self.slack_options.api_url)

    @cached_property
    def directory(self) -> SlackDirectory:
        """Who is who in the workspace (emails, user groups), cached per answer."""
        return SlackDirectory(self.slack_client)

    @cached_property
    def access(self) -> AccessService:
        """Requests, votes and grants, with the posture gate of the policy file."""
        gate = PostureGate(self.tailnet, self.policy)
        return AccessService(
            self.db, self.tailnet, self.config, self.directory, clock=self.clock, gate=gate, oncall=self.oncall
        )

    @cached_property
    def oncall(self) -> OnCallSchedules:
        """The on-call providers with credentials in the settings (profiles' ``auto_approve``)."""
        return oncall_schedules(self._settings)

    @cached_property
    def lifecycle(self) -> Lifecycle:
        """The access flow's time-driven steps (timeouts, reminders, ended and interrupted grants)."""
        return Lifecycle(self.db, self.tailnet, self.config, clock=self.clock, access=self.access)

    @cached_property
    def outbox(self) -> Outbox:
        """Notifications written in the transaction of their change, delivered after it commits."""
        config = self.config
        return Outbox(self.db, clock=self.clock, lease=lambda: config().notification_lease)

    @cached_property
    def notifier(self) -> Notifier:
        """Delivers the outbox to Slack."""
        return Notifier(self.slack_client, self.outbox, self.access, self.unlocks)

    @cached_property
    def slack(self) -> SlackContext:
        """Everything the Slack listeners need (a process serving Slack; the worker needs only the lifecycle and
        the notifier)."""
        return SlackContext(
            db=self.db,
            tailnet=self.tailnet,
            config=self.config,
            client=self.slack_client,
            directory=self.directory,
            access=self.access,
            lifecycle=self.lifecycle,
            outbox=self.outbox,
            notifier=self.notifier,
            devices=DeviceIndex(self.tailnet, clock=self.clock),
            clock=self.clock,
            policy=self.policy,
            unlocks=self.unlocks,
            sync_runner=lambda: self.sync,
        )

    @cached_property
    def request_clients(self) -> RequestClients:
        """The request API's credentials (create, revoke, authenticate)."""
        config = self.config
        return RequestClients(self.db, clock=self.clock, profile_ids=lambda: [p.id for p in config().profiles])

    @cached_property
    def request_api(self) -> RequestApi:
        """``/api/v1/requests``: requests from scripts, beside ``/slack/events`` on the same listener."""
        from app.slack.listeners.views import after_submit  # on-call auto-approval, then the DMs, as for Slack's

        slack = self.slack
        return RequestApi(
            self.access,
            self.request_clients,
            clock=self.clock,
            announce=lambda request_id: slack.pools.later(slack.notifier.deliver, request_id),
            submitted=lambda request_id: slack.pools.later(after_submit, slack, request_id),
            proxies=self.trusted_proxies(),
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
            add_access_jobs(scheduler, lifecycle=self.lifecycle, deliver=self.notifier.deliver)
            reconcile_every = self.config().reconcile_interval
            if reconcile_every is not None:
                add_reconcile_job(scheduler, self.reconcile_and_report, every=reconcile_every)
        if devices:
            add_device_job(scheduler, self.slack.devices.refresh_if_stale)
        if sync:
            try:
                add_sync_job(scheduler, self.sync.run_due)
            except ConfigError as exc:
                log.warning("EDR posture sync is off: %s", exc)
        return scheduler

    def reconciler(self, *, scheduled: bool = False) -> Reconciler:
        """Drift reconcile. ``scheduled``: on a tailnet read one device at a time (the Tailscale API), each run reads
        at most ``MAX_READS`` devices, ``PACE`` seconds apart, and the next run goes on from there."""
        per_device = scheduled and not callable(getattr(self.tailnet, "attributes_with_keys", None))
        return Reconciler(
            self.db,
            self.tailnet,
            self.config,
            clock=self.clock,
            max_reads=MAX_READS if per_device else None,
            pace=PACE if per_device else 0.0,
        )

    @cached_property
    def _scheduled_reconciler(self) -> Reconciler:
        return self.reconciler(scheduled=True)  # one per process: it remembers where a partial run stopped

    def reconcile_and_report(self) -> ReconcileReport:
        """The scheduled reconcile: removes the findings of ``remove_unexplained`` profiles, DMs the admins about
        new ones (each once across processes)."""
        report = DriftReporter(self.slack_client, self.notifier, self.config)
        return self._scheduled_reconciler.run(removal=Removal.PROFILES, report=report)

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
        self.metrics.watch_outbox(self.outbox.pending_count)
        from app.slack.listeners.options import inline_answers  # Slack's listener graph: serving only

        app = events_app(bolt_app, signing_secret=secret, inline=inline_answers(self.slack))
        app = with_request_api(app, self.request_api)
        routes = routes_with_api(SLACK_ROUTES)
        return self.ops(app, name="slack", health=health or self.health(devices=True), route=routes)

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
