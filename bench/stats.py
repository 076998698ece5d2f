"""Small statistics helpers shared by the benchmark modules."""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    xs = sorted(samples)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(samples: Sequence[float]) -> dict:
    """n, median, p90, p99, min, max, mean of ``samples`` (same unit as the samples)."""
    return {
        "n": len(samples),
        "median": statistics.median(samples) if samples else math.nan,
        "p90": percentile(samples, 90),
        "p99": percentile(samples, 99),
        "min": min(samples, default=math.nan),
        "max": max(samples, default=math.nan),
        "mean": statistics.fmean(samples) if samples else math.nan,
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan
