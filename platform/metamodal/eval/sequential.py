"""The two protocols of next-item recommendation, per user (so slices and paired tests can
follow), always labelled in reports:

- ``sampled``: the target among ``n_negatives`` (20) items drawn uniformly from those the user
  never interacted with — the MMSRARec/SASRec papers' protocol; HR@{1,5,10}, NDCG@{5,10};
- ``full``: the target ranked over the whole catalogue with the user's history masked;
  Recall@{10,20} (one target: Recall = HR) and NDCG@{10,20}.

A tie with the target counts against it, so a constant scorer scores zero, never chance.
Scores come in as arrays: evaluation never imports a model.
"""

from __future__ import annotations

import numpy as np

SAMPLED = {"hr": (1, 5, 10), "ndcg": (5, 10)}
FULL = {"recall": (10, 20), "ndcg": (10, 20)}
N_NEGATIVES = 20


def sample_negatives(n_items: int, seen: list[np.ndarray], users: np.ndarray, n: int = N_NEGATIVES,
                     seed: int = 0) -> np.ndarray:  # fmt: skip
    """[len(users), n] distinct items per user, none in ``seen[u]`` (which holds the target)."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(users), n), np.int64)
    for r, u in enumerate(users):
        allowed = n_items - len(seen[u])
        if allowed < n:
            raise ValueError(f"user {int(u)} has seen {len(seen[u])} of {n_items} items: fewer than {n} negatives left")
        taken, got = set(seen[u].tolist()), []
        while len(got) < n:  # rejection: the catalogue is far larger than a history
            for d in rng.integers(0, n_items, 2 * n).tolist():
                if d not in taken and len(got) < n:
                    taken.add(d)
                    got.append(d)
        out[r] = got[:n]
    return out


def _from_rank(rank: np.ndarray, spec: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Per-user metrics from the target's 0-based rank."""
    out = {}
    for name, ks in spec.items():
        for k in ks:
            hit = rank < k
            out[f"{name}@{k}"] = (hit / np.log2(rank + 2) if name == "ndcg" else hit).astype(np.float64)
    return out


def sampled_metrics(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
    """``pos`` [b] the target's score, ``neg`` [b, n] the negatives'."""
    rank = (neg >= pos[:, None]).sum(1)
    return _from_rank(rank, SAMPLED)


def full_metrics(scores: np.ndarray, targets: np.ndarray, masked: list[np.ndarray]) -> dict[str, np.ndarray]:
    """``scores`` [b, n_items]; ``masked[r]``: items never recommended to row r (its history;
    the target is never among them)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    for r, m in enumerate(masked):
        s[r, m] = -np.inf
    pos = s[np.arange(len(s)), targets]
    rank = (s >= pos[:, None]).sum(1) - 1
    return _from_rank(rank, FULL)
