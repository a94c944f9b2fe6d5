"""access requests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "access_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=False),
        sa.Column("requester_email", sa.String(length=255), nullable=True),
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("attribute", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("device_name", sa.String(length=255), nullable=False),
        sa.Column("device_owner", sa.String(length=255), nullable=False),
        sa.Column("device_os", sa.String(length=64), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("approver_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timeout_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("deny_reason", sa.String(length=500), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminder_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=32), nullable=True),
        sa.Column("ended_note", sa.String(length=255), nullable=True),
        sa.Column("granting_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("extends_request_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_requests_requester_id"), ["requester_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_requests_status"), ["status"], unique=False)
        batch_op.create_index("ix_access_requests_status_expires", ["status", "expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_requests_timeout_at"), ["timeout_at"], unique=False)

    op.create_table(
        "access_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["access_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "ts", name="uq_access_messages_channel_ts"),
    )
    with op.batch_alter_table("access_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_messages_request_id"), ["request_id"], unique=False)

    op.create_table(
        "access_notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["access_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("access_notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_notifications_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_notifications_sent_at"), ["sent_at"], unique=False)

    op.create_table(
        "access_votes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("approver_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["access_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "approver_id", name="uq_access_votes_request_approver"),
    )
    with op.batch_alter_table("access_votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_votes_request_id"), ["request_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("access_votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_votes_request_id"))

    op.drop_table("access_votes")
    with op.batch_alter_table("access_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_notifications_sent_at"))
        batch_op.drop_index(batch_op.f("ix_access_notifications_request_id"))

    op.drop_table("access_notifications")
    with op.batch_alter_table("access_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_messages_request_id"))

    op.drop_table("access_messages")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_requests_timeout_at"))
        batch_op.drop_index("ix_access_requests_status_expires")
        batch_op.drop_index(batch_op.f("ix_access_requests_status"))
        batch_op.drop_index(batch_op.f("ix_access_requests_requester_id"))

    op.drop_table("access_requests")
