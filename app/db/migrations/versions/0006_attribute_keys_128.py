"""remote expiries hold attribute keys up to 128 characters

Tailscale's current OpenAPI document allows custom attribute keys of up to 128 characters (the built-in store
keeps its own limit of 50, enforced in code); the table in which the Tailscale adapter records the expiries it
set widens its key from 64 to 128, so that such a write is recorded, not refused by the database after Tailscale
accepted it. Widening keeps every existing value.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("remote_expiries", "key"),)


def upgrade() -> None:

    for table, column in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, existing_type=sa.String(length=64), type_=sa.String(length=128))


def downgrade() -> None:

    for table, column in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, existing_type=sa.String(length=128), type_=sa.String(length=64))
