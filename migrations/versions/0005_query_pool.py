"""the query pool

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("answered_by", sa.JSON(), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queries")),
        sa.UniqueConstraint("sha256", name=op.f("uq_queries_sha256")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_queries_created_at"), "queries", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_queries_created_at"), table_name="queries")
    op.drop_table("queries")
