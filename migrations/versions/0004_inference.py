"""Inference nodes (the registry the API forwards to), evaluations and merged exports.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:52:08.814404
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "infer_nodes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("queue_size", sa.Integer(), nullable=False),
        sa.Column("loaded", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_infer_nodes")),
    )
    with op.batch_alter_table("infer_nodes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_infer_nodes_heartbeat_at"), ["heartbeat_at"], unique=False
        )

    op.create_table(
        "fine_tuning_evaluations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("file_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("node_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fine_tuning_jobs.id"],
            name=op.f("fk_fine_tuning_evaluations_job_id_fine_tuning_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fine_tuning_evaluations")),
    )
    with op.batch_alter_table("fine_tuning_evaluations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fine_tuning_evaluations_job_id_id", ["job_id", "id"], unique=False
        )

    op.create_table(
        "merged_exports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("verification", sa.JSON(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("node_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fine_tuning_jobs.id"],
            name=op.f("fk_merged_exports_job_id_fine_tuning_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merged_exports")),
        sa.UniqueConstraint("job_id", "source_sha256", name=op.f("uq_merged_exports_job_id")),
    )


def downgrade() -> None:
    op.drop_table("merged_exports")
    with op.batch_alter_table("fine_tuning_evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_fine_tuning_evaluations_job_id_id")

    op.drop_table("fine_tuning_evaluations")
    with op.batch_alter_table("infer_nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_infer_nodes_heartbeat_at"))

    op.drop_table("infer_nodes")
