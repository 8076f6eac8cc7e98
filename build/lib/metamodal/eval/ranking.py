"""Full-ranking evaluation over the whole catalogue, batched on torch.

Two phases, so that slices cost almost nothing: (1) score each batch of users against every
item, mask the items they must not be credited for (training items, and validation items at
test time), keep the top K indices; (2) look the top-K up in the positive set and compute the
metrics per user — again for each slice (a user subset, or positives restricted to an item
subset such as cold items or items lacking a modality).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from metamodal.eval.metrics import DEFAULT_KS, mean_metrics, per_user_metrics

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # user indices [B] -> scores [B, n_items]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    slice_users: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "users": int(len(self.users)),
            "slices": self.slices,
            "slice_users": self.slice_users,
            "seconds": self.seconds,
        }


def top_k(
    score_fn: ScoreFn,
    users: np.ndarray,
    exclude: sp.csr_matrix,
    k: int,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Top-k item indices [len(users), k] with ``exclude``'s items (rows = users) masked out."""
    ex = exclude[users].tocsr()
    n_items = exclude.shape[1]
    k = min(k, n_items)
    out = np.empty((len(users), k), dtype=np.int64)
    indptr = ex.indptr
    with torch.inference_mode():
        for start in range(0, len(users), batch_size):
            end = min(start + batch_size, len(users))
            ub = torch.from_numpy(users[start:end]).to(device)
            scores = score_fn(ub)
            if scores.shape != (end - start, n_items):
                raise ValueError(
                    f"score_fn returned {tuple(scores.shape)}, expected {(end - start, n_items)}"
                )
            lo, hi = indptr[start], indptr[end]
            if hi > lo:
                rows = np.repeat(np.arange(end - start), np.diff(indptr[start : end + 1]))
                scores[
                    torch.from_numpy(rows).to(device),
                    torch.from_numpy(ex.indices[lo:hi].astype(np.int64)).to(device),
                ] = -torch.inf
            out[start:end] = torch.topk(scores, k, dim=1, sorted=True).indices.cpu().numpy()
    return out


def hits_for(
    topk: np.ndarray, users: np.ndarray, positives: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray]:
    """(hits [U, k] bool, n_pos [U]) by binary search of (user, item) keys in the positives."""
    pos = positives[users].tocoo()
    n_items = positives.shape[1]
    keys = np.sort(pos.row.astype(np.int64) * n_items + pos.col)
    q = np.arange(len(users), dtype=np.int64)[:, None] * n_items + topk
    at = np.searchsorted(keys, q)
    hits = keys[np.minimum(at, len(keys) - 1)] == q if len(keys) else np.zeros_like(q, dtype=bool)
    n_pos = np.bincount(pos.row, minlength=len(users))
    return hits, n_pos


def evaluate(
    score_fn: ScoreFn,
    positives: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: tuple[int, ...] = DEFAULT_KS,
    *,
    user_slices: dict[str, np.ndarray] | None = None,
    item_slices: dict[str, np.ndarray] | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """Evaluate every user with at least one positive.

    ``user_slices``: name -> bool [n_users]; ``item_slices``: name -> bool [n_items] (the slice
    keeps only positives inside the item subset, and the users that have one).
    """
    t0 = time.perf_counter()
    users = np.flatnonzero(np.diff(positives.indptr) > 0)
    top = top_k(score_fn, users, exclude, max(ks), batch_size, device)
    t1 = time.perf_counter()
    hits, n_pos = hits_for(top, users, positives)
    per_user = per_user_metrics(hits, n_pos, ks)
    result = EvalResult(mean_metrics(per_user), users, per_user)
    for name, mask in (user_slices or {}).items():
        sel = mask[users]
        result.slices[name] = mean_metrics({k: v[sel] for k, v in per_user.items()})
        result.slice_users[name] = int(sel.sum())
    for name, mask in (item_slices or {}).items():
        sub = positives.multiply(sp.csr_matrix(mask.astype(np.float32)[None, :])).tocsr()
        sub.eliminate_zeros()
        h, n = hits_for(top, users, sub)
        sel = n > 0
        result.slices[name] = mean_metrics(per_user_metrics(h[sel], n[sel], ks))
        result.slice_users[name] = int(sel.sum())
    result.seconds = {
        "rank": t1 - t0,
        "metrics": time.perf_counter() - t1,
        "total": time.perf_counter() - t0,
    }
    return result
