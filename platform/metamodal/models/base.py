"""The smallest interface a non-trained recommender honours (popularity, random): fit on
training interactions, score a batch of users against the whole catalogue. The trained zoo has
its own interface (``zoo_base.ZooModel``: a loss per batch, user/item vectors for ANN
retrieval) and does not inherit this one. The evaluator needs only a score function:
``full_scores`` here, ``ZooModel.scorer()`` there."""

from __future__ import annotations

from abc import ABC, abstractmethod

import scipy.sparse as sp
import torch


class Recommender(ABC):
    name: str = "base"

    @abstractmethod
    def fit(self, train: sp.csr_matrix) -> Recommender: ...

    @abstractmethod
    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), n_items]; higher is better. Masking is the evaluator's job."""
