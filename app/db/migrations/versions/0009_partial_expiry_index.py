"""the attribute expiry index holds only values that expire

Nearly every attribute value (all an EDR sync writes) has no expiry, and no query looks for a missing one: the
expiry sweep and the writers' purge ask ``expires_at <= now``, which implies ``IS NOT NULL``, so SQLite and
PostgreSQL use a partial index for it. Leaving NULLs out spares every insert one B-tree update (a first sync of
50,000 devices inserts 350,000 values).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXPIRING = sa.text("expires_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_device_attributes_expires_at", table_name="device_attributes")
    op.create_index(
        "ix_device_attributes_expires_at",
        "device_attributes",
        ["expires_at"],
        sqlite_where=_EXPIRING,
        postgresql_where=_EXPIRING,
    )


def downgrade() -> None:
    op.drop_index("ix_device_attributes_expires_at", table_name="device_attributes")
    op.create_index("ix_device_attributes_expires_at", "device_attributes", ["expires_at"])
