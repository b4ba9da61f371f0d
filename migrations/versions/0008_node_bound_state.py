"""a node bound to an instance is never available (CHECK ck_nodes_bound_state)

Rows that already break the rule (a node made ``available`` while its instance was being
deleted, issue 16) are unbound first: the instance keeps its state, and the reconciler
finishes its delete (the node no longer names it, so the delete marks it DELETED).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Frozen here: a migration must not change when the code's states do.
BOUND = ("active", "clean failed", "deleting", "deploy failed", "deploying", "wait call-back")
RULE = "instance_id IS NULL OR provision_state IN ({})".format(
    ", ".join(f"'{state}'" for state in BOUND)
)


def upgrade() -> None:
    op.execute(f"UPDATE nodes SET instance_id = NULL WHERE NOT ({RULE})")
    with op.batch_alter_table("nodes") as batch:
        batch.create_check_constraint("bound_state", RULE)  # named ck_nodes_bound_state


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_constraint("bound_state", type_="check")
