"""reply_usage (the tokens each reply cost, by user, key, endpoint, model and agent) and
messages.tokens_estimated

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 12:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from relaychat.storage.types import UTCDateTime

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No foreign key to messages or conversations: what a reply cost stays counted after
    # its conversation is deleted (a key's budget for the day must not be reset that way).
    op.create_table(
        "reply_usage",
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("generation_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("api_key_id", sa.String(length=80), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_reply_usage_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_reply_usage")),
    )
    op.create_index("ix_reply_usage_user_time", "reply_usage", ["user_id", "created_at"])
    op.create_index("ix_reply_usage_time", "reply_usage", ["created_at"])
    op.create_index(
        "ix_reply_usage_key_time", "reply_usage", ["api_key_id", "created_at", "total_tokens"]
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(
            sa.Column("tokens_estimated", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("tokens_estimated")
    op.drop_index("ix_reply_usage_key_time", table_name="reply_usage")
    op.drop_index("ix_reply_usage_time", table_name="reply_usage")
    op.drop_index("ix_reply_usage_user_time", table_name="reply_usage")
    op.drop_table("reply_usage")
