"""LGMRec (Guo et al., AAAI 2024, "Local and Global Graph Learning for Multimodal
Recommendation"): local graph embeddings plus global hypergraph embeddings, for any number of
content modalities.

- Local, collaborative: LightGCN over the ID embeddings (``n_ui_layers``, layer mean).
- Local, per modality: items' projected features (absent rows zero), users' the mean over
  their training items, propagated ``n_mm_layers`` times over the user–item graph; added
  L2-normalised.
- Global, per modality: ``hyper_num`` learnable hyperedges; an item's membership is a
  (Gumbel-)softmax of its features' projection onto them, a user's of the sum over the user's
  items; the collaborative item embeddings pass item → hyperedge → user/item
  (``n_hyper_layer``). Training draws Gumbel noise and drops memberships (``keep_rate``);
  scoring uses the plain softmax, so a model's scores are deterministic. Items without the
  modality belong to no hyperedge of it.
- Final: local + ``alpha`` · normalised global; loss: BPR + ``cl_weight`` · InfoNCE between
  consecutive modalities' global embeddings (the batch's users and positive items) +
  ``reg_weight`` · the batch embeddings' norms.

Defaults are the authors' Baby settings (MMRec's ``LGMRec.yaml``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from metamodal.models.content import ContentFeatures, require_content
from metamodal.models.graphs import (
    SparseOp,
    SymmetricPropagate,
    normalised_adjacency,
    propagate,
    row_mean,
)
from metamodal.models.zoo_base import ModelData, Params, ZooModel, bpr_loss, info_nce


class LGMRecParams(Params):
    embedding_dim: int = 64
    n_ui_layers: int = 2
    n_mm_layers: int = 2
    n_hyper_layer: int = Field(1, ge=1)  # the global embeddings need at least one pass
    hyper_num: int = 4
    keep_rate: float = 0.5  # of hyperedge memberships kept in training
    alpha: float = 0.3  # weight of the global embeddings
    tau: float = 0.2  # Gumbel-softmax and InfoNCE temperature
    cl_weight: float = 1e-4
    reg_weight: float = 1e-6


class LGMRec(ZooModel):
    name = "lgmrec"
    Params = LGMRecParams

    def __init__(self, data: ModelData, params: LGMRecParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        d = params.embedding_dim
        self.content = ContentFeatures(data)
        self.init_id_embeddings(d)
        self.trs = torch.nn.ModuleList(torch.nn.Linear(dm, d, bias=False) for dm in self.content.dims())
        self.hyper = torch.nn.ModuleList(
            torch.nn.Linear(dm, params.hyper_num, bias=False) for dm in self.content.dims()
        )
        r = (data.train > 0).astype(np.float32).tocsr()
        self.r = SparseOp(r)  # users' item sums (hyperedge membership)
        self.r_mean = SparseOp(row_mean(r))  # users' item means (modality features)
        self.adj = normalised_adjacency(data.train)

    def _graphs_to(self, device: torch.device) -> None:
        if self.adj.device != device:
            self.adj = self.adj.to(device)

    def _membership(self, logits: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        if self.training:
            h = F.gumbel_softmax(logits, self.p.tau, dim=1, hard=False)
            h = F.dropout(h, 1 - self.p.keep_rate)
        else:
            h = torch.softmax(logits / self.p.tau, 1)
        return h if present is None else h * present[:, None]

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(users, items, each modality's global embeddings [n_users + n_items, d])."""
        self._graphs_to(self.item.weight.device)
        cge = propagate(self.adj, torch.cat([self.user.weight, self.item.weight]), self.p.n_ui_layers)
        local, glob = cge, []
        for k in range(len(self.content)):
            x, present = self.content.features(k), self.content.present(k)
            f = self.trs[k](x) * present[:, None]
            h = torch.cat([self.r_mean @ f, f])
            for _ in range(self.p.n_mm_layers):
                h = SymmetricPropagate.apply(self.adj, h)
            local = local + F.normalize(h)
            logits = self.hyper[k](x) * present[:, None]
            ih = self._membership(logits, present)
            uh = self._membership(self.r @ logits, None)
            i_ret = cge[self.n_users :]
            for _ in range(self.p.n_hyper_layer):
                lat = ih.T @ i_ret
                i_ret = ih @ lat
            glob.append(torch.cat([uh @ lat, i_ret]))
        out = local + self.p.alpha * F.normalize(sum(glob[1:], glob[0]))
        return out[: self.n_users], out[self.n_users :], glob

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, i, _ = self.embeddings()
        return u, i

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u, i, glob = self.embeddings()
        loss = bpr_loss(u[users], i[pos], i[neg])
        n_u = self.n_users
        for g1, g2 in zip(glob, glob[1:], strict=False):
            loss = loss + self.p.cl_weight * (info_nce(g1[users], g2[:n_u], self.p.tau, users, "sum")
                                              + info_nce(g1[n_u + pos], g2[n_u:], self.p.tau, pos, "sum"))  # fmt: skip
        reg = u[users].norm() + i[pos].norm() + i[neg].norm()
        return loss + self.p.reg_weight * reg / len(users)
