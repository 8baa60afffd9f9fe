"""Shared pieces of the command line: the user-facing error type and time formatting."""

from __future__ import annotations

from quaff_core import __version__

# Open event streams (a dashboard following a running job) never end by themselves; on shutdown
# uvicorn waits this long for them, then closes them.
SHUTDOWN_GRACE_SECONDS = 5


class CliError(Exception):
    """A problem the user can fix; printed as one line with a non-zero exit, never a traceback."""


def clock(seconds: float) -> str:
    """A duration as m:ss, or h:mm:ss from an hour on (negative counts as 0)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def package_version() -> str:
    """Quaff's version (the one version string, `quaff_core.__version__`)."""
    return __version__
