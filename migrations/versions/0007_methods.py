"""Jobs record their method (supervised, dpo), PEFT options and the model they continue from.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("method", sa.String(16), nullable=False, server_default="supervised")
        )
        batch_op.add_column(sa.Column("peft", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("continued_from", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.drop_column("continued_from")
        batch_op.drop_column("peft")
        batch_op.drop_column("method")
