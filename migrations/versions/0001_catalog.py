"""catalog: concepts, sources, index builds

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "concepts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concepts")),
        sa.UniqueConstraint("name", name=op.f("uq_concepts_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("concept_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["concept_id"], ["concepts.id"], name=op.f("fk_sources_concept_id_concepts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("concept_id", "sha256", name=op.f("uq_sources_concept_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_sources_sha256"), "sources", ["sha256"])
    op.create_index(op.f("ix_sources_concept_id"), "sources", ["concept_id"])
    op.create_table(
        "index_builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("encoder_id", sa.String(128), nullable=False),
        sa.Column("factory", sa.String(128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_builds")),
    )


def downgrade() -> None:
    op.drop_table("index_builds")
    op.drop_index(op.f("ix_sources_concept_id"), table_name="sources")
    op.drop_index(op.f("ix_sources_sha256"), table_name="sources")
    op.drop_table("sources")
    op.drop_table("concepts")
