"""search spaces over stored backbone features; job kinds

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

A catalog keeps one backbone's features per source and any number of named spaces, each a
head over those features. The legacy single index is carried over when the catalog first
loads (index/legacy.py): it becomes the `style` space when its encoder was the raw backbone,
and the `content` space when it was a trained checkpoint.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("backbone_id", sa.String(128), nullable=False),
        sa.Column("head_id", sa.String(128), nullable=False),
        sa.Column("head_path", sa.String(1024), nullable=True),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("factory", sa.String(128), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_head_id", sa.String(128), nullable=True),
        sa.Column("previous_head_path", sa.String(1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spaces")),
        sa.UniqueConstraint("name", name=op.f("uq_spaces_name")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="ingest"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("kind")
    op.drop_table("spaces")
