"""import batches and source identifiers of imported facts

Revision ID: c3f0a1b00003
Revises: b2ea6c1a0002
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = 'c3f0a1b00003'
down_revision: str | None = 'b2ea6c1a0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder reserved for: import work (issue 6)


def downgrade() -> None:
    pass
