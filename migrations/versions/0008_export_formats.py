"""Exports have a format: merged (transformers), gguf_f16, gguf_q8_0 or gguf_lora; one per job,
adapter checksum and format.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("merged_exports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("format", sa.String(16), nullable=False, server_default="merged")
        )
        batch_op.drop_constraint("uq_merged_exports_job_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_merged_exports_job_id", ["job_id", "source_sha256", "format"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM merged_exports WHERE format <> 'merged'")
    with op.batch_alter_table("merged_exports", schema=None) as batch_op:
        batch_op.drop_constraint("uq_merged_exports_job_id", type_="unique")
        batch_op.create_unique_constraint("uq_merged_exports_job_id", ["job_id", "source_sha256"])
        batch_op.drop_column("format")
