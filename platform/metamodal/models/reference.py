"""Reference points every table needs: popularity (what any model must beat) and random
(what chance looks like)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from metamodal.models.base import Recommender


class Popularity(Recommender):
    """Items scored by their number of training interactions, the same for every user."""

    name = "popularity"

    def fit(self, train: sp.csr_matrix) -> Popularity:
        counts = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)
        self.scores = torch.from_numpy(counts)
        return self

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores.to(users.device).expand(len(users), -1).clone()


class Random(Recommender):
    """Uniform random scores, seeded per batch of users so results repeat."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: sp.csr_matrix) -> Random:
        self.n_items = train.shape[1]
        return self

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(users[0]))
        return torch.rand(len(users), self.n_items, generator=g).to(users.device)


BASELINES = {"popularity": Popularity, "random": Random}
