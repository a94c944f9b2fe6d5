"""Everything the Slack listeners need, built once per process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from apscheduler.schedulers.base import BaseScheduler
from slack_sdk import WebClient

from app.access.lifecycle import Lifecycle
from app.access.outbox import Outbox
from app.access.service import AccessService
from app.config.settings import ConfigSource
from app.core.clock import Clock, utcnow
from app.posture.gate import PolicySource, PostureGate
from app.posture.policy import Policy
from app.runtime import Runtime
from app.slack.client import slack_client
from app.slack.device_index import DeviceIndex
from app.slack.directory import SlackDirectory
from app.slack.notify import Notifier
from app.slack.work import Pools
from app.vendors.sync import SyncRunner, make_runner

log = logging.getLogger(__name__)


@dataclass
class SlackContext:
    """The domain services plus the Slack client, shared by every listener."""

    runtime: Runtime
    config: ConfigSource
    client: WebClient
    directory: SlackDirectory
    access: AccessService
    lifecycle: Lifecycle
    outbox: Outbox
    notifier: Notifier
    devices: DeviceIndex
    clock: Clock = utcnow
    policy: Callable[[], Policy | None] = field(default=lambda: None, repr=False)
    pools: Pools = field(default_factory=Pools, repr=False)  # acknowledgements, and the work after them
    _sync: SyncRunner | None = field(default=None, repr=False)
    scheduler: BaseScheduler | None = field(default=None, repr=False)  # this process's jobs, shown by /healthz

    @property
    def sync(self) -> SyncRunner:
        """The EDR sync runner (built on first use: it needs the credentials key, the access flow does not).

        Raises ``ConfigError`` when the key cannot be had (PostgreSQL without ``ACCESSBOT_SECRET_KEY``).
        """
        if self._sync is None:
            self._sync = make_runner(self.runtime, self.config)
        return self._sync

    def profile_label(self, profile_id: str) -> str:
        """Display name of a profile (its id if it was removed from the config)."""
        profile = self.config().profile(profile_id)
        return profile.label() if profile else profile_id


def build_context(
    runtime: Runtime, *, client: WebClient | None = None, config: ConfigSource | None = None, clock: Clock = utcnow
) -> SlackContext:
    """Wire the access flow to Slack for ``runtime`` (client from SLACK_BOT_TOKEN and SLACK_API_URL)."""
    settings = runtime.settings
    if client is None:
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        client = slack_client(token, settings.slack_api_url)
    config = config or ConfigSource.from_settings(settings)
    source = config
    config_dir = source.path.parent if source.path is not None else None
    policy = PolicySource(lambda: source().policy_path(config_dir))
    directory = SlackDirectory(client)
    gate = PostureGate(runtime.tailnet, policy)
    access = AccessService(runtime.db, runtime.tailnet, config, directory, clock=clock, gate=gate)
    outbox = Outbox(runtime.db, clock=clock, lease=lambda: config().notification_lease)
    return SlackContext(
        runtime=runtime,
        config=config,
        client=client,
        directory=directory,
        access=access,
        lifecycle=Lifecycle(runtime.db, runtime.tailnet, config, clock=clock),
        outbox=outbox,
        notifier=Notifier(client, outbox, access),
        devices=DeviceIndex(runtime.tailnet, clock=clock),
        clock=clock,
        policy=policy,
    )


def warm_up(ctx: SlackContext) -> None:
    """Learn every workspace member's email once at start, off the request path (options loads read it from
    memory); a failure only means emails are learned one by one as people open the request form."""

    def warm() -> None:
        try:
            count = ctx.directory.warm()
        except Exception as exc:  # Slack unreachable or rate-limited at start: not fatal
            log.warning("could not load the workspace's members at start (%s); learning them as they come", exc)
        else:
            log.info("loaded %d workspace members", count)

    ctx.pools.later(warm)
