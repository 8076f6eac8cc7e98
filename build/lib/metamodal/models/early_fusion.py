"""Early fusion: an item is an MLP over [ID embedding, each modality's projection]. Where a
modality is missing its slot holds a learned missing token and a mask bit says so
(``impute="token"``). The imputation baselines the MMA paper argues against are the same network
with the gap filled instead: zeros (``impute_zero``) or the modality's mean over the items that
have it (``impute_mean``) — and no mask bit, so the network cannot tell filled from real."""

from __future__ import annotations

from typing import Literal

import torch

from metamodal.models.content import ContentFeatures, projection, require_content
from metamodal.models.zoo_base import ModelData, Params, ZooModel


class EarlyFusionParams(Params):
    embedding_dim: int = 64
    hidden: int = 128
    dropout: float = 0.1
    reg_weight: float = 1e-4
    impute: Literal["token", "zero", "mean"] = "token"


class EarlyFusion(ZooModel):
    name = "early_fusion"
    Params = EarlyFusionParams
    default_impute = "token"

    def __init__(self, data: ModelData, params: EarlyFusionParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        d = params.embedding_dim
        self.content = ContentFeatures(data)
        self.init_id_embeddings(d)
        self.proj = torch.nn.ModuleList(projection(dm, d) for dm in self.content.dims())
        self.missing_token = torch.nn.Parameter(torch.zeros(len(self.content), d))
        n = len(self.content)
        width = d * (n + 1) + (n if params.impute == "token" else 0)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width, params.hidden),
            torch.nn.LeakyReLU(),
            torch.nn.Dropout(params.dropout),
            torch.nn.Linear(params.hidden, d),
        )
        if params.impute == "mean":
            for k in range(n):
                m = self.content.present(k)
                mean = (
                    self.content.features(k)[m].mean(0)
                    if m.any()
                    else self.content.features(k)[0] * 0
                )
                self.register_buffer(f"mean{k}", mean, persistent=False)  # data, like the rows

    def fill(self, k: int, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Modality k's features with the missing rows (``~m``) filled; subclasses impute."""
        if self.p.impute == "mean":
            return torch.where(m, x, getattr(self, f"mean{k}"))
        return x

    def item_vectors(self) -> torch.Tensor:
        parts = [self.item.weight]
        for k in range(len(self.content)):
            x, m = self.content.features(k), self.content.present(k)[:, None]
            h = self.proj[k](self.fill(k, x, m))
            if self.p.impute == "token":
                h = torch.where(m, h, self.missing_token[k])
            parts.append(h)
        if self.p.impute == "token":
            parts.append(self.content.mask().float())
        return self.item.weight + self.mlp(torch.cat(parts, 1))

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item_vectors()


class ImputeZero(EarlyFusion):
    name = "impute_zero"

    def __init__(self, data: ModelData, params: EarlyFusionParams) -> None:
        super().__init__(data, params.model_copy(update={"impute": "zero"}))


class ImputeMean(EarlyFusion):
    name = "impute_mean"

    def __init__(self, data: ModelData, params: EarlyFusionParams) -> None:
        super().__init__(data, params.model_copy(update={"impute": "mean"}))
