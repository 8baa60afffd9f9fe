"""Names shared by the API (producer) and the worker (consumer) of the fine-tuning queue."""

from __future__ import annotations

FINE_TUNE_TASK = "quaff.run_fine_tune"
FINE_TUNE_QUEUE = "fine-tune"
