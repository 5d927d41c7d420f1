"""audit trail: append-only guards and the chain's head anchor

Revision ID: a1d17a0e0001
Revises: db65b5a673e4
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = 'a1d17a0e0001'
down_revision: str | None = 'db65b5a673e4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder reserved for: audit work (issue 5.3)


def downgrade() -> None:
    pass
