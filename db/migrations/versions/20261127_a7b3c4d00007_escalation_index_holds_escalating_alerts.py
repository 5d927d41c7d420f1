"""alert: the escalation wake-up index holds only alerts that have an escalation time

``ix_alert_escalation_due`` was partial on ``status = 'open' AND escalated_at IS NULL``,
which every open alert satisfies: at a million patients it held 2.9 million entries for
the 3,233 alerts that have an ``escalate_at``, and every alert an incremental run opened
or resolved moved one (670 of the 12,000 pages such a run writes).  With
``escalate_at IS NOT NULL`` it holds the escalating alerts only.

Revision ID: a7b3c4d00007
Revises: f6a2d3e00006
Create Date: 2026-11-27 21:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a7b3c4d00007'
down_revision: str | None = 'f6a2d3e00006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status = 'open' AND escalated_at IS NULL"
NEW = "status = 'open' AND escalated_at IS NULL AND escalate_at IS NOT NULL"


def _where(clause: str) -> dict:
    return {"sqlite_where": sa.text(clause), "postgresql_where": sa.text(clause)}


def upgrade() -> None:
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_escalation_due')
        batch_op.create_index('ix_alert_escalation_due', ['escalate_at'], unique=False, **_where(NEW))


def downgrade() -> None:
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_escalation_due')
        batch_op.create_index('ix_alert_escalation_due', ['escalate_at'], unique=False, **_where(OLD))
