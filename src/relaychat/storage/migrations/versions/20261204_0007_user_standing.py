"""users.disabled_at, users.session_epoch and kept_session_id, refresh_tokens.session_epoch:
disabled accounts, and sessions ended everywhere at once

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 09:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from relaychat.storage.types import UTCDateTime

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults fill the existing rows: every token issued so far is of epoch 0.
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("kept_session_id", sa.String(length=36), nullable=True))
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(
            sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("session_epoch")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("kept_session_id")
        batch.drop_column("session_epoch")
        batch.drop_column("disabled_at")
