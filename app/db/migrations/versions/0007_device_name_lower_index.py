"""an index on lower(devices.name)

Device names are unique case-insensitively (as DNS compares them): every ``devices add`` and ``devices import``
looks up ``lower(name)``, and DEVICE arguments resolve names the same way. Without an expression index that is a
scan of every device (23 ms of a 30 ms one-device import at 50,000 devices).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_devices_name_lower", "devices", [sa.text("lower(name)")])


def downgrade() -> None:
    op.drop_index("ix_devices_name_lower", table_name="devices")
