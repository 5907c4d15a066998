"""the review desk: key roles, cases, decisions, rescores, the audit log

Existing keys become `admin` keys, so every key keeps what it could do before roles existed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _at(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("role", sa.String(16), nullable=True))
    op.execute("UPDATE api_keys SET role = 'admin'")
    op.create_table(
        "cases", _id(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("key_name", sa.String(255), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("backbone_id", sa.String(128), nullable=False),
        sa.Column("head_ids", sa.JSON(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("top_concept", sa.String(255), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("none_probability", sa.Float(), nullable=True),
        _at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sqlite_autoincrement=True,
    )
    for column in ("status", "sha256", "top_concept", "created_at"):
        op.create_index(op.f(f"ix_cases_{column}"), "cases", [column])
    op.create_table(
        "case_decisions", _id(),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("concepts", sa.JSON(), nullable=False),
        sa.Column("source_ids", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("key_name", sa.String(255), nullable=False),
        _at(),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_decisions_case_id_cases"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_decisions")),
        sqlite_autoincrement=True,
    )
    for column in ("case_id", "decision", "key_id", "key_name"):
        op.create_index(op.f(f"ix_case_decisions_{column}"), "case_decisions", [column])
    op.create_table(
        "case_rescores", _id(),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("key_name", sa.String(255), nullable=False),
        sa.Column("previous_answer", sa.JSON(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("backbone_id", sa.String(128), nullable=False),
        sa.Column("head_ids", sa.JSON(), nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        _at(),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_rescores_case_id_cases"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_rescores")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_case_rescores_case_id"), "case_rescores", ["case_id"])
    op.create_table(
        "audit_log", _id(),
        _at("at"),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("key_name", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(255), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )
    for column in AUDIT_INDEXED:
        op.create_index(op.f(f"ix_audit_log_{column}"), "audit_log", [column])


AUDIT_INDEXED = ("at", "key_id", "key_name", "action", "target_type", "target_id")


def downgrade() -> None:
    for column in AUDIT_INDEXED:
        op.drop_index(op.f(f"ix_audit_log_{column}"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_case_rescores_case_id"), table_name="case_rescores")
    op.drop_table("case_rescores")
    for column in ("case_id", "decision", "key_id", "key_name"):
        op.drop_index(op.f(f"ix_case_decisions_{column}"), table_name="case_decisions")
    op.drop_table("case_decisions")
    for column in ("status", "sha256", "top_concept", "created_at"):
        op.drop_index(op.f(f"ix_cases_{column}"), table_name="cases")
    op.drop_table("cases")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("role")
