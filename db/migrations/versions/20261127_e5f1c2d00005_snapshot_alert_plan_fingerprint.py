"""risk_snapshot: the alert plan's fingerprint, alert digest and open rules, so a full run skips unchanged plans

Revision ID: e5f1c2d00005
Revises: d4e7b0c00004
Create Date: 2026-11-27 13:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e5f1c2d00005'
down_revision: str | None = 'd4e7b0c00004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and empty: a snapshot without them is re-planned by the next run, as before.
    with op.batch_alter_table('risk_snapshot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alert_fingerprint', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('alert_digest', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('open_rules', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('risk_snapshot', schema=None) as batch_op:
        batch_op.drop_column('open_rules')
        batch_op.drop_column('alert_digest')
        batch_op.drop_column('alert_fingerprint')
