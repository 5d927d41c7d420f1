"""reserved (faults, concurrency, backup work)

Revision ID: d4e7b0c00004
Revises: c3f0a1b00003
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = 'd4e7b0c00004'
down_revision: str | None = 'c3f0a1b00003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder reserved for: faults/backup work (issue 5.4/5.5/5.7)


def downgrade() -> None:
    pass
