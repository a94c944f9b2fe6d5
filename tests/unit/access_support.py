"""Shared pieces of the access-domain unit tests: users, a config with two profiles, a tailnet that can fail
writes, and helpers to submit requests and read their notifications (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.access.read_model import AccessRequest
from app.access.service import AccessService
from app.config.model import Config
from app.db import Database
from app.db.tables.access import NotificationRow, RequestStatus
from app.tailnet.builtin import BuiltinTailnet
from app.tailnet.models import Device

REQ, BOB, CAROL, DAVE, ADMIN = "UREQ", "UBOB", "UCAROL", "UDAVE", "UADMIN"
EMAILS = {
    REQ: "req@example.com",
    BOB: "bob@example.com",
    CAROL: "carol@example.com",
    DAVE: "dave@example.com",
    ADMIN: "admin@example.com",
}


def make_config(**overrides: Any) -> Config:
    prod = {
        "id": "prod",
        "description": "Production",
        "attribute": "custom:prodAccess",
        "max_duration": "4h",
        "durations": ["30m", "1h", "4h", "8h"],
        "approvers": ["bob@example.com", "@sre"],
        "notify_channel": "CNOTIFY",
    }
    prod.update(overrides)
    pair = {
        "id": "pair",
        "attribute": "custom:pairAccess",
        "value": "rw",
        "max_duration": "1h",
        "durations": ["1h"],
        "approvers": ["bob@example.com", "carol@example.com", "dave@example.com"],
        "approvals_required": 2,
    }
    return Config.model_validate(
        {"admins": [ADMIN], "profiles": [prod, pair], "request_timeout": "1h", "reminder_before": "10m"}
    )


class FlakyTailnet:
    """Wraps a tailnet: counts set_attribute calls and can fail them."""

    def __init__(self, inner: BuiltinTailnet) -> None:
        self.inner = inner
        self.sets = 0
        self.fail_with: Exception | None = None
        self.lock = threading.Lock()

    def set_attribute(self, *args: Any, **kwargs: Any) -> None:
        with self.lock:
            self.sets += 1
        if self.fail_with is not None:
            raise self.fail_with
        self.inner.set_attribute(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def submit(service: AccessService, device: Device | None, **kw: Any) -> Any:
    args = {
        "requester_id": REQ,
        "profile_id": "prod",
        "device": device,
        "duration": timedelta(hours=1),
        "approver_ids": [BOB],
        "reason": "deploy hotfix",
    }
    args.update(kw)
    return service.submit(**args)


def kinds(db: Database, request_id: int) -> list[str]:
    with db.session() as s:
        return list(
            s.scalars(
                select(NotificationRow.kind)
                .where(NotificationRow.request_id == request_id)
                .order_by(NotificationRow.id)
            )
        )


def access_request(created_at: datetime, **fields: Any) -> AccessRequest:
    """A pending request's read model for view tests: ``fields`` replace the defaults (no decision, no grant yet)."""
    values: dict[str, Any] = {
        "id": 7,
        "status": RequestStatus.PENDING,
        "requester_id": "UREQ",
        "requester_email": "req@example.com",
        "profile_id": "prod",
        "attribute": "custom:prodAccess",
        "value": True,
        "approvals_required": 1,
        "device_id": "123",
        "device_name": "laptop.tail.ts.net",
        "device_owner": "a@x.io",
        "device_os": "macos",
        "duration": timedelta(hours=1),
        "reason": "",
        "approver_ids": ("UBOB",),
        "created_at": created_at,
        "timeout_at": created_at + timedelta(hours=24),
        "decided_at": None,
        "decided_by": None,
        "deny_reason": None,
        "granted_at": None,
        "expires_at": None,
        "ended_at": None,
        "ended_by": None,
        "ended_note": None,
        "last_error": None,
        "extends_request_id": None,
    }
    return AccessRequest(**{**values, **fields})
