"""VBPR (He & McAuley, 2016), for any number of content modalities: an item is its ID embedding
next to a learned projection of its (concatenated) content features; users get a matching
content-taste half. Missing modalities contribute zeros (VBPR has no notion of absence)."""

from __future__ import annotations

import torch

from metamodal.models.content import ContentFeatures, require_content
from metamodal.models.zoo_base import ModelData, Params, ZooModel


class VBPRParams(Params):
    embedding_dim: int = 64  # split evenly between the ID half and the content half
    reg_weight: float = 1e-4


class VBPR(ZooModel):
    name = "vbpr"
    Params = VBPRParams

    def __init__(self, data: ModelData, params: VBPRParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        self.content = ContentFeatures(data)
        half = params.embedding_dim // 2
        self.user = torch.nn.Embedding(data.n_users, params.embedding_dim)
        self.item = torch.nn.Embedding(data.n_items, half)
        self.proj = torch.nn.Linear(sum(self.content.dims()), params.embedding_dim - half)
        torch.nn.init.xavier_uniform_(self.user.weight)
        torch.nn.init.xavier_uniform_(self.item.weight)

    def item_vectors(self) -> torch.Tensor:
        f = torch.cat([self.content.features(k) for k in range(len(self.content))], 1)
        return torch.cat([self.item.weight, self.proj(f)], 1)

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item_vectors()
