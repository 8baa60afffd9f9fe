"""Files expire; metrics events are unique per job and step; checkpoints say whether they are
the worker's own safety checkpoints.

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-10 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_files_expires_at", ["expires_at"], unique=False)
    with op.batch_alter_table("fine_tuning_job_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.Integer(), nullable=True))
    _backfill_metrics_steps()
    with op.batch_alter_table("fine_tuning_job_events", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_fine_tuning_job_events_job_id_step", ["job_id", "step"]
        )
    with op.batch_alter_table("fine_tuning_checkpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("safety", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def _backfill_metrics_steps() -> None:
    """Older metrics events get their step; of duplicates (re-trained steps) the newest stays."""
    events = sa.table(
        "fine_tuning_job_events",
        sa.column("id", sa.String()),
        sa.column("job_id", sa.String()),
        sa.column("type", sa.String()),
        sa.column("data", sa.JSON()),
        sa.column("step", sa.Integer()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(events.c.id, events.c.job_id, events.c.data)
        .where(events.c.type == "metrics")
        .order_by(events.c.id.desc())
    ).all()
    seen: set[tuple[str, int]] = set()
    for event_id, job_id, data in rows:
        step = (data or {}).get("step") if isinstance(data, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        if (job_id, step) in seen:
            conn.execute(sa.delete(events).where(events.c.id == event_id))
            continue
        seen.add((job_id, step))
        conn.execute(sa.update(events).where(events.c.id == event_id).values(step=step))


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_checkpoints", schema=None) as batch_op:
        batch_op.drop_column("safety")
    with op.batch_alter_table("fine_tuning_job_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_fine_tuning_job_events_job_id_step", type_="unique")
        batch_op.drop_column("step")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_expires_at")
        batch_op.drop_column("expires_at")
