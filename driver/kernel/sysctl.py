"""Per-interface sysctls, written idempotently.

Inside a managed plugin /proc/sys is read-only (environment.md), so a write that
is refused is reported to the caller, who decides whether the feature it serves
can do without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("pynet.kernel")
ROOT = Path("/proc/sys")


def ensure(path: str, value: str) -> bool:
    """Set ``/proc/sys/<path>`` to ``value`` unless it already is; False if that is not possible."""
    target = ROOT / path
    try:
        if target.read_text().strip() == value:
            return True
        target.write_text(value)
        return True
    except OSError as exc:
        log.warning("could not set %s=%s: %s", path.replace("/", "."), value, exc)
        return False
