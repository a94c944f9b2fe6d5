"""Every table of accessbot, one module per area (``tailnet``, ``access``, ``vendors``) on one ``Base``; importing
this package registers them all. The schema itself is owned by the alembic migrations in ``app/db/migrations``."""

from app.db.tables.access import (
    OPEN_STATUSES,
    AccessRequestRow,
    ChannelProblemRow,
    DriftFindingRow,
    NotificationRow,
    PostedMessageRow,
    RequestClientRow,
    RequestStatus,
    UserLinkRow,
    VoteRow,
)
from app.db.tables.base import Base
from app.db.tables.tailnet import (
    ApiKeyRow,
    AttributeKeyRow,
    AttributeRow,
    AuditEventRow,
    DeviceRow,
    OAuthClientRow,
    OAuthTokenRow,
    RemoteExpiryRow,
)
from app.db.tables.vendors import IntegrationRow, SyncStateRow

__all__ = [
    "OPEN_STATUSES",
    "AccessRequestRow",
    "ApiKeyRow",
    "AttributeKeyRow",
    "AttributeRow",
    "AuditEventRow",
    "Base",
    "ChannelProblemRow",
    "DeviceRow",
    "DriftFindingRow",
    "IntegrationRow",
    "NotificationRow",
    "OAuthClientRow",
    "OAuthTokenRow",
    "PostedMessageRow",
    "RemoteExpiryRow",
    "RequestClientRow",
    "RequestStatus",
    "SyncStateRow",
    "UserLinkRow",
    "VoteRow",
]
