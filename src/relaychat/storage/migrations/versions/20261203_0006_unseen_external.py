"""conversations.unseen_external: the sidebar's badge survives a reload

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A server default fills the existing rows without rewriting them one by one.
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(
            sa.Column("unseen_external", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("unseen_external")
