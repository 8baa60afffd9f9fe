"""The CPU feature flags the kernel of this machine reports (Linux `/proc/cpuinfo`)."""

from __future__ import annotations

import functools


@functools.cache
def cpuinfo_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()
