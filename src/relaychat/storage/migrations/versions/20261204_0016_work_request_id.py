"""generations.request_id and outbox.request_id: the id of the request that caused a reply
and its callbacks, so one id leads an operator from the access line to the generation's and
the deliveries' log lines and rows

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("generations", "outbox")


def upgrade() -> None:
    # Nullable, no default, no index: adding them rewrites nothing, and rows written
    # before stay without one. Nothing looks rows up by it (the logs are searched).
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_id")
