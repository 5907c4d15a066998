"""spaces.backbone: the name of the backbone whose features a space maps (efficientnet_lite0 for
today's style and content spaces, sscd_distilled for the copy space); today's rows take the name
their backbone_id starts with

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("spaces", sa.Column("backbone", sa.String(64), nullable=True))
    spaces = sa.table("spaces", sa.column("id", sa.Integer), sa.column("backbone_id", sa.String),
                      sa.column("backbone", sa.String))
    connection = op.get_bind()
    for space_id, backbone_id in connection.execute(sa.select(spaces.c.id, spaces.c.backbone_id)).all():
        connection.execute(spaces.update().where(spaces.c.id == space_id)
                           .values(backbone=backbone_id.rsplit("-", 1)[0]))


def downgrade() -> None:
    with op.batch_alter_table("spaces") as batch:
        batch.drop_column("backbone")
