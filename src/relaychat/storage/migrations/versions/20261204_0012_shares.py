"""shares: read-only links to a snapshot of a conversation's branch, and the snapshots'
messages

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 15:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from relaychat.storage.types import UTCDateTime

# JSONB on PostgreSQL, JSON text on SQLite (as in relaychat.storage.types.JsonType).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hint", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("include_phone_numbers", sa.Boolean(), nullable=False),
        sa.Column("include_key_names", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_shares_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_shares_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_shares_token_hash")),
    )
    op.create_index("ix_shares_user_created", "shares", ["user_id", "created_at"])
    op.create_index(op.f("ix_shares_conversation_id"), "shares", ["conversation_id"])
    op.create_table(
        "shared_messages",
        sa.Column("share_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("phone_number", sa.String(length=64), nullable=True),
        sa.Column("key_name", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["shares.id"],
            name=op.f("fk_shared_messages_share_id_shares"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("share_id", "position", name=op.f("pk_shared_messages")),
    )


def downgrade() -> None:
    op.drop_table("shared_messages")
    op.drop_index(op.f("ix_shares_conversation_id"), table_name="shares")
    op.drop_index("ix_shares_user_created", table_name="shares")
    op.drop_table("shares")
