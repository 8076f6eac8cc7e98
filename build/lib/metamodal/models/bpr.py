"""BPR-MF (Rendle et al., 2009): user and item embeddings, dot-product scores, BPR loss."""

from __future__ import annotations

import torch

from metamodal.models.zoo_base import ModelData, Params, ZooModel


class BPRParams(Params):
    embedding_dim: int = 64
    reg_weight: float = 1e-4


class BPR(ZooModel):
    name = "bpr"
    Params = BPRParams

    def __init__(self, data: ModelData, params: BPRParams) -> None:
        super().__init__(data, params)
        self.init_id_embeddings(params.embedding_dim)

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight
