"""The Bolt app factory: one ``App`` with every listener registered."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import App
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

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
    logger = logging.getLogger("accessbot.slack")
    with _same_token_not_reported(logger, ctx.client.token):
        app = App(
            client=ctx.client,
            signing_secret=signing_secret,
            process_before_response=False,  # acknowledge first, as Slack's 3 s require (serve, gunicorn and tests)
            listener_executor=ctx.pools.ack,  # listeners run here up to ack(); slow work goes to ctx.pools.work
            token_verification_enabled=token_verification_enabled,
            logger=logger,
        )
    for module in (shortcuts, options, actions, views, commands, home, posture):
        module.register(app, ctx)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error in a Slack listener (%s): %s", body.get("type"), error, exc_info=error)

    return app


class _SameTokenWarning(logging.Filter):
    """Drops Bolt's "As you gave `client` as well, `token` will be unused." and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


@contextmanager
def _same_token_not_reported(logger: logging.Logger, client_token: str | None) -> Iterator[None]:
    """Why Bolt would warn at every start: ``App`` is given no ``token`` (the client carries it), but Bolt then reads
    ``SLACK_BOT_TOKEN`` from the environment by itself and, finding both a token and a client, says the token will be
    unused. Passing any token (even ``""``, which Bolt replaces by the variable) cannot avoid it. When the variable
    holds the very token of our client there is no conflict to report, so that one message is dropped while the app
    is built; a different token (a real mix-up) is still reported."""
    if (os.environ.get("SLACK_BOT_TOKEN") or "").strip() != (client_token or ""):
        yield
        return
    quiet = _SameTokenWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
