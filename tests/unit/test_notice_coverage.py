"""Every outbox ``Notice`` kind is either told to the requester by ``notice`` or deliberately not (a kind added
without a message would otherwise fall silently to ``notice``'s default and nobody would be told)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.access.read_model import Notice
from app.db.tables.access import RequestStatus
from app.slack.views.request_message import notice
from tests.unit.access_support import access_request

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

NOT_A_REQUESTER_DM = {
    Notice.REQUESTED: "the requester gets the request's own message, posted with the approvers' DMs",
    Notice.VOTE_RECORDED: "a vote only updates the posted messages",
    Notice.BREAK_GLASS_REVIEW_DUE: "a reminder to the approvers, not the requester",
}


def settled_request() -> object:
    """A request with every time a notice may mention (granted, expiring, scheduled, decided)."""
    return access_request(
        NOW,
        status=RequestStatus.GRANTED,
        decided_at=NOW,
        decided_by="UBOB",
        granted_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        starts_at=NOW + timedelta(hours=2),
        approvals=("UBOB",),
        last_error="boom",
        deny_reason="no",
        reviewed_by="UCAROL",
    )


@pytest.mark.parametrize("kind", list(Notice))
def test_each_kind_is_told_or_deliberately_not(kind: Notice) -> None:
    told = notice(settled_request(), kind, "Production", {"by": "UADMIN"})  # type: ignore[arg-type]
    if kind in NOT_A_REQUESTER_DM:
        assert told is None, f"{kind} now DMs the requester: move it out of NOT_A_REQUESTER_DM"
    else:
        assert told is not None, f"notice() has no message for {kind!r}: the requester would not be told"
        text, blocks = told
        assert text and blocks
