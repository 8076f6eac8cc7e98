"""Late fusion: one scorer per evidence source — the ID/collaborative embedding and each content
modality — combined by weights that are global (one learned vector) or gated per item (a small
network over the item's own representations). A missing modality's term is dropped and the
remaining weights renormalised, never imputed. Scores stay a dot product of
``concat_s(u_s)`` and ``concat_s(w_is · i_s)``, so any ANN index serves the fused model.
"""

from __future__ import annotations

from typing import Literal

import torch

from metamodal.models.content import ContentFeatures, projection, require_content
from metamodal.models.zoo_base import ModelData, Params, ZooModel, l2_reg


class LateFusionParams(Params):
    embedding_dim: int = 64
    hidden: int = 0  # 0: linear projections of content features
    reg_weight: float = 1e-4
    weighting: Literal["global", "gated"] = "gated"


class LateFusion(ZooModel):
    name = "late_fusion"
    Params = LateFusionParams

    def __init__(self, data: ModelData, params: LateFusionParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        d = params.embedding_dim
        self.content = ContentFeatures(data)
        self.n_sources = 1 + len(self.content)  # "id" first, then the content modalities
        self.users = torch.nn.Parameter(torch.empty(self.n_sources, data.n_users, d))
        self.item = torch.nn.Embedding(data.n_items, d)
        torch.nn.init.xavier_uniform_(self.users.view(-1, d))
        torch.nn.init.xavier_uniform_(self.item.weight)
        self.proj = torch.nn.ModuleList(
            projection(dm, d, params.hidden) for dm in self.content.dims()
        )
        self.global_logits = torch.nn.Parameter(torch.zeros(self.n_sources))
        self.gate = torch.nn.Linear(self.n_sources * d, self.n_sources)

    def source_mask(self) -> torch.Tensor:
        """[n_items, n_sources]: the ID source is always there (cold items carry an untrained
        embedding, which the weights learn to trust less)."""
        ones = torch.ones(self.n_items, 1, dtype=torch.bool, device=self.item.weight.device)
        return torch.cat([ones, self.content.mask()], 1)

    def item_reps(self) -> torch.Tensor:
        """[n_sources, n_items, d]."""
        reps = [self.item.weight]
        reps += [self.proj[k](self.content.features(k)) for k in range(len(self.content))]
        return torch.stack(reps)

    def weights(self, reps: torch.Tensor) -> torch.Tensor:
        """[n_items, n_sources], rows summing to 1 over the sources present."""
        if self.p.weighting == "global":
            logits = self.global_logits.expand(self.n_items, -1)
        else:
            logits = self.gate(reps.detach().permute(1, 0, 2).reshape(self.n_items, -1))
        return torch.softmax(logits.masked_fill(~self.source_mask(), float("-inf")), 1)

    def fused(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reps = self.item_reps()
        return reps, self.weights(reps), self.source_mask()

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        reps, w, _ = self.fused()
        items = (reps * w.T[:, :, None]).permute(1, 0, 2).reshape(self.n_items, -1)
        users = self.users.permute(1, 0, 2).reshape(self.n_users, -1)
        return users, items

    def source_scores(
        self, reps: torch.Tensor, users: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """[batch, n_sources] per-source scores y_s(u, i)."""
        return (self.users[:, users] * reps[:, items]).sum(-1).T

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        reps, w, _ = self.fused()
        y_pos = (self.source_scores(reps, users, pos) * w[pos]).sum(1)
        y_neg = (self.source_scores(reps, users, neg) * w[neg]).sum(1)
        bpr = -torch.nn.functional.logsigmoid(y_pos - y_neg).mean()
        return bpr + self.p.reg_weight * l2_reg(
            self.users[:, users].flatten(0, 1), self.item(pos), self.item(neg)
        )
