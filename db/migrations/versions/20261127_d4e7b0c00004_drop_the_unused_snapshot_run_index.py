"""drop risk_snapshot's run_id index: no query reads it, and every snapshot write rewrote it

Revision ID: d4e7b0c00004
Revises: c3f0a1b00003
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'd4e7b0c00004'
down_revision: str | None = 'c3f0a1b00003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('risk_snapshot', schema=None) as batch_op:
        batch_op.drop_index('ix_risk_snapshot_run_id')


def downgrade() -> None:
    with op.batch_alter_table('risk_snapshot', schema=None) as batch_op:
        batch_op.create_index('ix_risk_snapshot_run_id', ['run_id'], unique=False)
