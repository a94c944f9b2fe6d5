"""The App Home tab."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from app.access import break_glass, queries
from app.access.outbox import open_channel_problems
from app.slack.context import SlackContext
from app.slack.views.break_glass import home_blocks
from app.slack.views.delivery import channel_problem_blocks
from app.slack.views.home import home_view

LISTED_FOR_APPROVERS = 200
"""Unreviewed break-glass grants read to find an approver's (the oldest first; they are few in practice)."""


def publish_home(ctx: SlackContext, client: WebClient, user_id: str) -> None:
    """Render and publish ``user_id``'s home tab from the database."""
    db = ctx.db
    view = home_view(
        active=queries.active_grants(db, user_id) + queries.upcoming_grants(db, user_id),
        open_requests=queries.my_open_requests(db, user_id),
        awaiting=queries.awaiting_approver(db, user_id),
        label=ctx.profile_label,
        now=ctx.clock(),
        notices=_reviews(ctx, user_id) + _admin_notices(ctx, user_id),
    )
    client.views_publish(user_id=user_id, view=view)


def _reviews(ctx: SlackContext, user_id: str) -> list[dict[str, Any]]:
    """Break-glass grants ``user_id`` was told about as an approver and nobody reviewed yet (at most 3 blocks)."""
    unreviewed, _ = break_glass.unreviewed(ctx.db, limit=LISTED_FOR_APPROVERS)
    return home_blocks(break_glass.reviewable_by(unreviewed, user_id), ctx.profile_label)


def _admin_notices(ctx: SlackContext, user_id: str) -> list[dict[str, Any]]:
    """What an admin must act on (notify channels accessbot cannot post to); nothing for anyone else."""
    if not ctx.access.is_admin(user_id):
        return []
    return channel_problem_blocks(open_channel_problems(ctx.db), ctx.config())


def register(app: App, ctx: SlackContext) -> None:
    """Wire the App Home handler below; Bolt passes it the arguments it names after ``ctx``."""
    app.event("app_home_opened")(partial(home_opened, ctx))


def home_opened(ctx: SlackContext, event: dict[str, Any], client: WebClient) -> None:
    if event.get("tab", "home") == "home":  # Bolt acknowledged the event already
        ctx.pools.later(publish_home, ctx, client, event["user"])
