"""BPR-MF (Rendle et al., 2009): user and item embeddings, dot-product scores, BPR loss."""

from __future__ import annotations

import torch

from metamodal.models.zoo_base import ModelData, Params, ZooModel, bpr_loss, l2_reg


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

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u, p, n = self.user(users), self.item(pos), self.item(neg)
        return bpr_loss(u, p, n) + self.p.reg_weight * l2_reg(u, p, n)
