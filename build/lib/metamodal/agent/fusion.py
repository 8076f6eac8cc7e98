"""The one fusion rule MMA and RuleRouter-Fuse share: a weighted sum of the called tools'
z-scored scores (a candidate a tool could not score counts as average: 0), then
``λ · z(first stage) + (1 − λ) · agent`` — λ selected on validation; the first-stage term only
when ``graph`` is observed, since the retriever's scores are collaborative evidence."""

from __future__ import annotations

import numpy as np

from metamodal.agent.tools import ToolResult


def zscore(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    ok = np.isfinite(s)
    out = np.zeros_like(s)
    if ok.sum() > 1:
        sd = s[ok].std()
        if sd > 1e-12:
            out[ok] = (s[ok] - s[ok].mean()) / sd
    return out


def agent_scores(results: dict[str, ToolResult], weights: dict[str, float], n: int) -> np.ndarray:
    """Σ w_t z(s_t) / Σ w_t over the usable tools with positive weight; zeros when none."""
    total, wsum = np.zeros(n), 0.0
    for name, w in weights.items():
        r = results.get(name)
        if r is None or not r.usable or w <= 0:
            continue
        total += w * zscore(r.scores)
        wsum += w
    return total / wsum if wsum > 0 else total


def fuse(
    results: dict[str, ToolResult],
    weights: dict[str, float],
    first_stage: np.ndarray | None,
    lam: float,
    n: int,
) -> np.ndarray:
    """Final scores for a pool of ``n`` candidates."""
    a = agent_scores(results, weights, n)
    if first_stage is None:
        return a
    if not any(results[t].usable and w > 0 for t, w in weights.items() if t in results):
        return zscore(first_stage)
    return lam * zscore(first_stage) + (1 - lam) * a
