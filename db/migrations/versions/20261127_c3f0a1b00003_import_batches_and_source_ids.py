"""import batches and source identifiers of imported facts

Revision ID: c3f0a1b00003
Revises: b2ea6c1a0002
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'c3f0a1b00003'
down_revision: str | None = 'b2ea6c1a0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: fact tables that gain both columns / that had source_id already and gain source_system
_NEW_BOTH = ("spinal_lesion", "neuro_status", "metastatic_status", "dental_exam", "locomo_condition")
_NEW_SYSTEM = ("imaging_study", "performance_status", "lab_result", "bma_administration", "treatment", "skeletal_event")
_FACTS = (
    "spinal_lesion",
    "imaging_study",
    "performance_status",
    "neuro_status",
    "lab_result",
    "metastatic_status",
    "bma_administration",
    "dental_exam",
    "treatment",
    "skeletal_event",
    "locomo_condition",
)


def upgrade() -> None:
    op.create_table(
        'import_batch',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('file_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column('file_format', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('imported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column('entries', sa.Integer(), nullable=False),
        sa.Column('counts', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('issues', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_batch_file_sha256'), ['file_sha256'], unique=False)
    for table in _NEW_BOTH + _NEW_SYSTEM:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column('source_system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
            )
            if table in _NEW_BOTH:
                batch_op.add_column(
                    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
                )
    for table in _FACTS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(
                f'ux_{table}_source', ['patient_id', 'source_system', 'source_id'], unique=True
            )
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.create_index('ux_patient_source', ['source_system', 'source_id'], unique=True)
    # an imported zoledronic acid / pamidronate dose the source does not give is unknown, not invented
    with op.batch_alter_table('bma_administration', schema=None) as batch_op:
        batch_op.alter_column('dose_mg', existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM bma_administration WHERE dose_mg IS NULL")
    with op.batch_alter_table('bma_administration', schema=None) as batch_op:
        batch_op.alter_column('dose_mg', existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_index('ux_patient_source')
    for table in _FACTS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ux_{table}_source')
    for table in _NEW_BOTH + _NEW_SYSTEM:
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table in _NEW_BOTH:
                batch_op.drop_column('source_id')
            batch_op.drop_column('source_system')
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_batch_file_sha256'))
    op.drop_table('import_batch')
