"""The Slack app over HTTP: ``POST /slack/events`` (events, interactivity, slash commands, options) routed to
Bolt, signed requests only; the operational endpoints are added by ``app.web.ops``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from slack_bolt import App

from app.slack.payloads import InlineAnswer, SlackEventsHandler
from app.web.ops import HEALTH_PATH, METRICS_PATH, RouteOf, fixed_routes, json_response

EVENTS_PATH = "/slack/events"
ROUTES: RouteOf = fixed_routes(EVENTS_PATH, HEALTH_PATH, METRICS_PATH)
"""Metrics labels of the Slack listener's requests."""


def events_app(
    bolt_app: App, *, signing_secret: str, inline: Mapping[str, InlineAnswer] | None = None
) -> WSGIApplication:
    """Route Slack's requests to Bolt (signed with ``signing_secret`` only); anything else is a JSON 404/405.

    ``inline``: ``block_suggestion`` answers by ``action_id`` that the endpoint gives itself, without Bolt's
    acknowledgement poll (``app.slack.listeners.options.inline_answers``).
    """
    slack = SlackEventsHandler(bolt_app, signing_secret=signing_secret, path=EVENTS_PATH, inline=inline)

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == EVENTS_PATH:
            if method != "POST":
                return json_response(start_response, "405 Method Not Allowed", {"message": "use POST"})
            return slack(environ, start_response)
        return json_response(start_response, "404 Not Found", {"message": f"no route for {path}"})

    return application
