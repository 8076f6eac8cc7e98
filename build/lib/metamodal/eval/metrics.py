"""Top-K metrics from hit matrices, vectorised over users (MMRec's definitions).

``hits[u, r]`` is True when user u's r-th ranked item is a positive; ``n_pos[u]`` is how many
positives u has. Recall divides by all positives; NDCG's ideal DCG and MAP's normaliser are
capped at min(n_pos, K).
"""

from __future__ import annotations

import numpy as np

METRICS = ("recall", "ndcg", "precision", "map", "hit")
DEFAULT_KS = (5, 10, 20, 50)


def per_user_metrics(
    hits: np.ndarray, n_pos: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS
) -> dict[str, np.ndarray]:
    """``{"recall@10": array[n_users], ...}`` for users with at least one positive."""
    kmax = max(ks)
    if hits.shape[1] < kmax:
        raise ValueError(f"need at least {kmax} ranked items per user, got {hits.shape[1]}")
    h = hits[:, :kmax].astype(np.float64)
    n_pos = n_pos.astype(np.float64)
    ranks = np.arange(1, kmax + 1, dtype=np.float64)
    disc = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(h, axis=1)
    dcg = np.cumsum(h * disc, axis=1)
    ideal = np.cumsum(disc)
    ap = np.cumsum(h * cum_hits / ranks, axis=1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        cap = np.minimum(n_pos, k).astype(np.int64)
        out[f"recall@{k}"] = cum_hits[:, k - 1] / n_pos
        out[f"ndcg@{k}"] = dcg[:, k - 1] / ideal[cap - 1]
        out[f"precision@{k}"] = cum_hits[:, k - 1] / k
        out[f"map@{k}"] = ap[:, k - 1] / cap
        out[f"hit@{k}"] = (cum_hits[:, k - 1] > 0).astype(np.float64)
    return out


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) if len(v) else float("nan") for k, v in per_user.items()}
