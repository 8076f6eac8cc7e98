"""BPR triples: every training interaction once per epoch, each with one uniform negative the
user has not interacted with (MMRec's protocol). Vectorised: rejection rounds, membership by one
binary search over the sorted (user, item) keys."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class TripleSampler:
    def __init__(self, train: sp.csr_matrix, seed: int = 0) -> None:
        train = train.tocsr().copy()
        train.sum_duplicates()
        train.sort_indices()
        self.n_items = train.shape[1]
        self.users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
        self.items = train.indices.astype(np.int64)
        self.keys = self.users * self.n_items + self.items  # sorted: rows ascending, then items
        self.seed = seed

    def __len__(self) -> int:
        return len(self.users)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[pos] == keys

    def epoch(self, epoch: int, rank: int = 0, world: int = 1) -> tuple[np.ndarray, ...]:
        """(users, positives, negatives) for this rank's equal share of one epoch, shuffled."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.users))
        share = len(order) // world
        order = order[rank * share : (rank + 1) * share]
        u, p = self.users[order], self.items[order]
        n = rng.integers(0, self.n_items, len(u))
        for _ in range(50):
            bad = self.is_positive(u, n)
            if not bad.any():
                break
            n[bad] = rng.integers(0, self.n_items, int(bad.sum()))
        return u, p, n
