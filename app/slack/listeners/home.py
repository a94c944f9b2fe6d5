"""The App Home tab."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from app.access import queries
from app.slack.context import SlackContext
from app.slack.views.home import home_view


def publish_home(ctx: SlackContext, client: WebClient, user_id: str) -> None:
    """Render and publish ``user_id``'s home tab from the database."""
    db = ctx.runtime.db
    view = home_view(
        active=queries.active_grants(db, user_id),
        open_requests=queries.my_open_requests(db, user_id),
        awaiting=queries.awaiting_approver(db, user_id),
        label=ctx.profile_label,
        now=ctx.clock(),
    )
    client.views_publish(user_id=user_id, view=view)


def register(app: App, ctx: SlackContext) -> None:
    """Add the App Home listener."""

    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            publish_home(ctx, client, event["user"])
