"""generations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 05:28:57.508716
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relaychat.storage.types

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("request_message_id", sa.String(length=36), nullable=True),
        sa.Column("response_message_id", sa.String(length=36), nullable=False),
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column(
            "heartbeat_at", relaychat.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("started_at", relaychat.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "first_token_at", relaychat.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("finished_at", relaychat.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_generations_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["response_message_id"],
            ["messages.id"],
            name=op.f("fk_generations_response_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_generations_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
    )
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_generations_conversation_id"), ["conversation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_generations_response_message_id"), ["response_message_id"], unique=False
        )
        batch_op.create_index(
            "ix_generations_status_heartbeat", ["status", "heartbeat_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_generations_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finish_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("finish_reason")

    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generations_user_id"))
        batch_op.drop_index("ix_generations_status_heartbeat")
        batch_op.drop_index(batch_op.f("ix_generations_response_message_id"))
        batch_op.drop_index(batch_op.f("ix_generations_conversation_id"))

    op.drop_table("generations")
