"""audit_hours: the audit rows counted per hour, owner, outcome and reason, filled from
the rows already there

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 13:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from relaychat.storage.audit_hours import back_fill_sql
from relaychat.storage.types import UTCDateTime

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_hours",
        sa.Column("hour", UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_owner_id", sa.String(length=36), server_default="", nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=120), server_default="", nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "key_owner_id", "outcome", "reason", name=op.f("pk_audit_hours")
        ),
    )
    op.execute(back_fill_sql(op.get_bind().dialect.name))


def downgrade() -> None:
    op.drop_table("audit_hours")
