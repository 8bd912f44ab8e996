"""indexes for GET /api/stats: counts per time bucket read from index ranges alone

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-04 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each index holds every column the statistics read, so a bucket's count walks one
    # index range and never the table. The owner's composite index also serves everything
    # the single-column indexes on key_owner_id and user_id did (and their foreign keys),
    # so those go: fewer indexes to write on the hot paths.
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index("ix_audit_events_key_owner_id")
        batch.create_index(
            "ix_audit_outcome_time", ["outcome", "created_at", "reason", "latency_ms"]
        )
        batch.create_index(
            "ix_audit_owner_outcome_time",
            ["key_owner_id", "outcome", "created_at", "reason", "latency_ms"],
        )
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_user_id")
        batch.create_index(
            "ix_generations_status_finished",
            ["status", "finished_at", "started_at", "first_token_at"],
        )
        batch.create_index(
            "ix_generations_user_status_finished",
            ["user_id", "status", "finished_at", "started_at", "first_token_at"],
        )
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_user_id")
        batch.create_index("ix_outbox_time", ["created_at", "kind", "status"])
        batch.create_index("ix_outbox_user_time", ["user_id", "created_at", "kind", "status"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_user_time")
        batch.drop_index("ix_outbox_time")
        batch.create_index("ix_outbox_user_id", ["user_id"])
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_user_status_finished")
        batch.drop_index("ix_generations_status_finished")
        batch.create_index("ix_generations_user_id", ["user_id"])
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index("ix_audit_owner_outcome_time")
        batch.drop_index("ix_audit_outcome_time")
        batch.create_index("ix_audit_events_key_owner_id", ["key_owner_id"])
