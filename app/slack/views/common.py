"""Kept for existing imports: every builder lives in :mod:`app.slack.views.blockkit` (one cut, one escape)."""

from __future__ import annotations

from app.slack.views.blockkit import (
    button,
    context,
    cut,
    escape,
    header,
    mrkdwn,
    option,
    plain,
    section,
    user,
    when,
)

__all__ = ["button", "context", "cut", "escape", "header", "mrkdwn", "option", "plain", "section", "user", "when"]
