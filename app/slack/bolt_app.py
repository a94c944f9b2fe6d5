"""The Bolt app factory: one ``App`` with every listener registered."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from app.slack.context import SlackContext
from app.slack.listeners import actions, commands, home, options, posture, shortcuts, views

log = logging.getLogger(__name__)


def build_app(
    ctx: SlackContext,
    *,
    signing_secret: str | None,
    token_verification_enabled: bool = True,
) -> App:
    """Create the Bolt app. Request signatures are always verified in HTTP mode (``signing_secret``)."""
    app = App(
        client=ctx.client,
        signing_secret=signing_secret,
        process_before_response=False,  # acknowledge first, as Slack's 3 s require (serve, gunicorn and tests)
        listener_executor=ctx.pools.ack,  # listeners run here up to ack(); slow work goes to ctx.pools.work
        token_verification_enabled=token_verification_enabled,
        logger=logging.getLogger("accessbot.slack"),
    )
    for module in (shortcuts, options, actions, views, commands, home, posture):
        module.register(app, ctx)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error in a Slack listener (%s): %s", body.get("type"), error, exc_info=error)

    return app
