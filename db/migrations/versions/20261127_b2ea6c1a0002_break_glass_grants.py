"""break-glass access grants

Revision ID: b2ea6c1a0002
Revises: a1d17a0e0001
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = 'b2ea6c1a0002'
down_revision: str | None = 'a1d17a0e0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder reserved for: break-glass work (issue 5.2)


def downgrade() -> None:
    pass
