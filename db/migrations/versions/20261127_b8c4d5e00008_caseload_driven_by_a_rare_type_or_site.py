"""caseload: priority indexes that carry the filter columns; rare types and sites drive it

The caseload walks patients in priority order until 200 match every filter; each
patient walked cost a read of its row, and a rare filter made it walk most of the
index (at 1M patients: a rare primary site 48 ms, with a tier 0.9 s; a rare alert
type 530 ms).  Now:

* the four priority indexes carry the caseload filters that seldom change
  (active, primary site, tier, nurse) after the priority, so SQLite checks them on
  the index entry and reads the row only of a patient who passes;
* a filter that matches few rows drives the query instead (db/queries.py), through
  ``ix_alert_rule_status_patient`` — the active-alert index of
  ``ix_alert_status_patient`` led by the rule, so an alert type's open alerts are
  one range (same columns and predicate, so it still covers the Trends burden) —
  or ``ix_snapshot_site`` on ``risk_snapshot.primary_site``, which a recompute
  leaves alone (the snapshot writer sets an indexed column only when it changed).

Revision ID: b8c4d5e00008
Revises: a7b3c4d00007
Create Date: 2026-11-27 21:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'b8c4d5e00008'
down_revision: str | None = 'a7b3c4d00007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('open', 'acknowledged', 'snoozed')"


def _where(clause: str) -> dict:
    return {"sqlite_where": sa.text(clause), "postgresql_where": sa.text(clause)}


#: name -> (old columns, new columns)
PRIORITY_INDEXES = {
    'ix_snapshot_active_priority': (
        ['active', 'priority'], ['active', 'priority', 'primary_site', 'tier', 'assigned_nurse_id']
    ),
    'ix_snapshot_nurse_priority': (
        ['assigned_nurse_id', 'priority'], ['assigned_nurse_id', 'priority', 'active', 'primary_site', 'tier']
    ),
    'ix_snapshot_tier_priority': (
        ['tier', 'priority'], ['tier', 'priority', 'active', 'primary_site', 'assigned_nurse_id']
    ),
    'ix_snapshot_nurse_tier_priority': (
        ['assigned_nurse_id', 'tier', 'priority'], ['assigned_nurse_id', 'tier', 'priority', 'active', 'primary_site']
    ),
}


def upgrade() -> None:
    with op.batch_alter_table('risk_snapshot', schema=None) as batch_op:
        for name, (_old, new) in PRIORITY_INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, new, unique=False)
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_status_patient')
        batch_op.create_index(
            'ix_alert_rule_status_patient',
            ['rule_id', 'status', 'patient_id', 'severity', 'assigned_to_id'],
            unique=False,
            **_where(ACTIVE),
        )
    with op.batch_alter_table('risk_snapshot', schema=None) as batch_op:
        batch_op.create_index('ix_snapshot_site', ['primary_site'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('risk_snapshot', schema=None) as batch_op:
        batch_op.drop_index('ix_snapshot_site')
        for name, (old, _new) in PRIORITY_INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, old, unique=False)
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_rule_status_patient')
        batch_op.create_index(
            'ix_alert_status_patient', ['status', 'patient_id', 'severity', 'assigned_to_id'], unique=False, **_where(ACTIVE)
        )
