"""The smallest interface every recommender here honours: fit on training interactions, score
a batch of users against the whole catalogue. The model zoo extends it (a loss per batch,
user/item vectors for ANN retrieval); the evaluator needs only ``full_scores``."""

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
