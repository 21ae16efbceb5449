"""Peak RSS of this process, its own: ``VmHWM`` (the high-water mark of this process's memory map).

``ru_maxrss`` is not that in a child started with ``subprocess``: Linux carries the parent's peak over into
the child at ``exec`` (CPython's subprocess uses ``vfork``), so every child of a 36 MB harness reported at
least 36 MB. ``VmHWM`` belongs to the memory map ``exec`` created. Elsewhere (no /proc): ``ru_maxrss``.
"""

from __future__ import annotations

import resource

__all__ = ["peak_rss_mb"]


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
