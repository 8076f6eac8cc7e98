"""Paired comparisons of two methods scored on the same units (users, episodes)."""

from __future__ import annotations

import numpy as np


def paired_wilcoxon(a: np.ndarray, b: np.ndarray) -> dict:
    """n, mean(a − b) and the two-sided Wilcoxon signed-rank p (1.0 when a equals b everywhere:
    the test is undefined there, and there is no difference to claim)."""
    from scipy.stats import wilcoxon

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if not np.any(d):
        return {"n": len(d), "mean_diff": 0.0, "wilcoxon_p": 1.0}
    return {"n": len(d), "mean_diff": float(d.mean()),
            "wilcoxon_p": float(wilcoxon(a, b, zero_method="wilcox").pvalue)}  # fmt: skip
