"""One polling helper for tests, the demo and the bench."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(check: Callable[[], object], seconds: float = 10.0, step: float = 0.2):
    """Poll ``check()`` until it is truthy or ``seconds`` have passed; returns its last value
    (the caller asserts on it, so the failure message shows what was last seen)."""
    deadline = time.monotonic() + seconds
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(step)
    return result
