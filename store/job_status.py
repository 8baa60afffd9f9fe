"""The job statuses and the one table of allowed moves between them (pure data)."""

from __future__ import annotations

# The one table of allowed moves; anything else is refused with a 400 that says why.
TRANSITIONS: dict[str, frozenset[str]] = {
    "validating_files": frozenset({"queued", "failed", "cancelled"}),
    "queued": frozenset({"running", "paused", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "paused"}),
    "paused": frozenset({"queued", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
TERMINAL = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
