"""access policy: scheduled, break-glass, on-call and API requests; identity links; request clients; drift

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("access_requests") as batch:
        batch.add_column(sa.Column("starts_at", _TS, nullable=True))
        batch.add_column(sa.Column("origin", sa.String(length=16), server_default="slack", nullable=False))
        batch.add_column(sa.Column("request_client_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("requester_login", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("auto_approval", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("break_glass", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("reviewed_at", _TS, nullable=True))
        batch.add_column(sa.Column("reviewed_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("review_reminded_at", _TS, nullable=True))
        batch.create_index("ix_access_requests_status_starts", ["status", "starts_at"])
    op.create_table(
        "user_links",
        sa.Column("slack_user_id", sa.String(length=32), nullable=False),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("slack_user_id"),
    )
    op.create_index("ix_user_links_login", "user_links", ["login"])
    op.create_table(
        "request_clients",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=True),
        sa.Column("profiles", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "drift_findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("device_name", sa.String(length=255), nullable=False),
        sa.Column("attribute", sa.String(length=128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("reported_at", _TS, nullable=True),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "attribute", name="uq_drift_findings_device_attribute"),
    )


def downgrade() -> None:
    op.drop_table("drift_findings")
    op.drop_table("request_clients")
    op.drop_index("ix_user_links_login", table_name="user_links")
    op.drop_table("user_links")
    with op.batch_alter_table("access_requests") as batch:
        batch.drop_index("ix_access_requests_status_starts")
        for column in (
            "review_reminded_at",
            "reviewed_by",
            "reviewed_at",
            "break_glass",
            "auto_approval",
            "requester_login",
            "request_client_id",
            "origin",
            "starts_at",
        ):
            batch.drop_column(column)
