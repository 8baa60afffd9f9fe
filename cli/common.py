"""Shared pieces of the command line: the user-facing error type."""

from __future__ import annotations


class CliError(Exception):
    """A problem the user can fix; printed as one line with a non-zero exit, never a traceback."""
