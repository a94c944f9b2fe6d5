"""Everything the Slack listeners need, built once per process by ``app.bootstrap``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk import WebClient

from app.access.lifecycle import Lifecycle
from app.access.outbox import Outbox
from app.access.service import AccessService
from app.config.source import ConfigSource
from app.core.clock import Clock, utcnow
from app.db import Database
from app.posture.policy import Policy
from app.posture.unlock_source import UnlockPreview
from app.slack.device_index import DeviceIndex
from app.slack.directory import SlackDirectory
from app.slack.notify import Notifier
from app.slack.work import Pools
from app.tailnet.protocol import Tailnet
from app.vendors.sync import SyncRunner

log = logging.getLogger(__name__)


@dataclass
class SlackContext:
    """The domain services plus the Slack client, shared by every listener (built by ``app.bootstrap``)."""

    db: Database
    tailnet: Tailnet
    config: ConfigSource
    client: WebClient
    directory: SlackDirectory
    access: AccessService
    lifecycle: Lifecycle
    outbox: Outbox
    notifier: Notifier
    devices: DeviceIndex
    sync_runner: Callable[[], SyncRunner] = field(repr=False)
    """Builds the EDR sync on first use: it needs the credentials key, the access flow does not."""
    clock: Clock = utcnow
    policy: Callable[[], Policy | None] = field(default=lambda: None, repr=False)
    unlocks: UnlockPreview | None = field(default=None, repr=False)
    """What a profile's attribute would unlock on a device (the request modal shows it); ``None``: not shown."""
    pools: Pools = field(default_factory=Pools, repr=False)  # acknowledgements, and the work after them

    @property
    def sync(self) -> SyncRunner:
        """The EDR sync runner; ``ConfigError`` when the key cannot be had (PostgreSQL without
        ``ACCESSBOT_SECRET_KEY``)."""
        return self.sync_runner()

    def profile_label(self, profile_id: str) -> str:
        """Display name of a profile (its id if it was removed from the config)."""
        profile = self.config().profile(profile_id)
        return profile.label() if profile else profile_id


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
