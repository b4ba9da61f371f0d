"""image virtual_size (the disk an image describes; qcow2 is smaller than that)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("virtual_size", sa.BigInteger(), nullable=True))
    # Every image so far is raw (qcow2 could not be deployed): its virtual size is its size.
    op.execute("UPDATE images SET virtual_size = size WHERE disk_format = 'raw'")


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("virtual_size")
