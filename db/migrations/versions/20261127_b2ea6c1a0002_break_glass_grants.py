"""break-glass access grants

Revision ID: b2ea6c1a0002
Revises: a1d17a0e0001
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'b2ea6c1a0002'
down_revision: str | None = 'a1d17a0e0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('break_glass_grant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('granted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('break_glass_grant', schema=None) as batch_op:
        batch_op.create_index('ix_break_glass_grant_user_patient_expires', ['user_id', 'patient_id', 'expires_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_break_glass_grant_patient_id'), ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('break_glass_grant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_break_glass_grant_patient_id'))
        batch_op.drop_index('ix_break_glass_grant_user_patient_expires')
    op.drop_table('break_glass_grant')
