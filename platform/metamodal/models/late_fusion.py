"""Late fusion: one scorer per evidence source — the ID/collaborative embedding and each content
modality — combined by weights that are global (one learned vector) or gated per item (a small
network over the item's own representations). A missing modality's term is dropped and the
remaining weights renormalised, never imputed. Scores stay a dot product of
``concat_s(u_s)`` and ``concat_s(w_is · i_s)``, so any ANN index serves the fused model.

``n_layers > 0`` gives each source a graph encoder, as DRAGON (MARGO's backbone) does: the
source's user embeddings and item representations (ID, or the projected modality with absent
rows zeroed) propagate LightGCN-style over the user–item graph before scoring.
"""

from __future__ import annotations

from typing import Literal

import torch

from metamodal.models.content import ContentFeatures, projection, require_content
from metamodal.models.graphs import normalised_adjacency, propagate
from metamodal.models.zoo_base import ModelData, Params, ZooModel, bpr_from_scores, l2_reg


class LateFusionParams(Params):
    embedding_dim: int = 64
    hidden: int = 0  # 0: linear projections of content features
    reg_weight: float = 1e-4
    weighting: Literal["global", "gated"] = "gated"
    n_layers: int = 2  # per-source LightGCN encoders over the user–item graph; 0: none


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
        # The gate reads the item's content (projected, detached) and which modalities it has —
        # not its ID embedding, through which per-item weights overfit (lfm2k valid R@20 0.33
        # with it against 0.37 for global weights). Zero-initialised: it starts as uniform.
        self.gate = torch.nn.Linear(len(self.content) * (d + 1), self.n_sources)
        torch.nn.init.zeros_(self.gate.weight)
        torch.nn.init.zeros_(self.gate.bias)
        self.adj = normalised_adjacency(data.train) if params.n_layers else None

    def source_mask(self) -> torch.Tensor:
        """[n_items, n_sources]: the ID source is always there (cold items carry an untrained
        embedding, which the weights learn to trust less)."""
        ones = torch.ones(self.n_items, 1, dtype=torch.bool, device=self.item.weight.device)
        return torch.cat([ones, self.content.mask()], 1)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [n_sources, n_users, d], items [n_sources, n_items, d]), per source."""
        reps = [self.item.weight]
        for k in range(len(self.content)):
            h = self.proj[k](self.content.features(k))
            reps.append(h * self.content.present(k)[:, None] if self.adj is not None else h)
        items = torch.stack(reps)
        if self.adj is None:
            return self.users, items
        if self.adj.device != items.device:
            self.adj = self.adj.to(items.device)
        d = items.shape[-1]
        ego = torch.cat([self.users, items], 1)  # [S, U + I, d]: one propagation for all sources
        flat = ego.permute(1, 0, 2).reshape(ego.shape[1], -1)
        out = propagate(self.adj, flat, self.p.n_layers).reshape(ego.shape[1], -1, d)
        out = out.permute(1, 0, 2)
        return out[:, : self.n_users], out[:, self.n_users :]

    def weights(self, reps: torch.Tensor) -> torch.Tensor:
        """[n_items, n_sources], rows summing to 1 over the sources present."""
        if self.p.weighting == "global":
            logits = self.global_logits.expand(self.n_items, -1)
        else:
            content = reps[1:].detach().permute(1, 0, 2).reshape(self.n_items, -1)
            logits = self.gate(torch.cat([content, self.content.mask().float()], 1))
        return torch.softmax(logits.masked_fill(~self.source_mask(), float("-inf")), 1)

    def fused(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user reps [S, U, d], item reps [S, I, d], weights [I, S], presence [I, S])."""
        u, reps = self.encode()
        return u, reps, self.weights(reps), self.source_mask()

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, reps, w, _ = self.fused()
        items = (reps * w.T[:, :, None]).permute(1, 0, 2).reshape(self.n_items, -1)
        return u.permute(1, 0, 2).reshape(self.n_users, -1), items

    def batch_scores(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-source scores for positives and negatives [B, S], the fused scores [B] of both,
        and the positives' fusion weights and presence mask [B, S]."""
        u, reps, w, mask = self.fused()
        s_pos = (u[:, users] * reps[:, pos]).sum(-1).T
        s_neg = (u[:, users] * reps[:, neg]).sum(-1).T
        return s_pos, s_neg, (s_pos * w[pos]).sum(1), (s_neg * w[neg]).sum(1), w[pos], mask[pos]

    def id_reg(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return self.p.reg_weight * l2_reg(
            self.users[:, users].flatten(0, 1), self.item(pos), self.item(neg)
        )

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        _, _, y_pos, y_neg, _, _ = self.batch_scores(users, pos, neg)
        return bpr_from_scores(y_pos, y_neg) + self.id_reg(users, pos, neg)
