"""FREEDOM (Zhou & Shen, 2023): freeze the item–item graph, denoise the user–item graph.

- A kNN item–item graph per content modality (cosine, k neighbours, among items that have the
  modality), symmetric-normalised and averaged over modalities, built once and frozen; item ID
  embeddings propagate over it (``n_mm_layers``) into a content-smoothed item term.
- Each training epoch keeps ``1 - dropout`` of the user–item edges, drawn with probability
  ∝ 1/sqrt(deg(u)·deg(i)) (degree-sensitive pruning); LightGCN runs on that graph. Scoring uses
  the full graph.
- Loss: BPR on the fused vectors plus, weighted by ``reg_weight``, BPR of the user vectors
  against each modality's projected raw features (on triples where both items have it).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from metamodal.models.content import ContentFeatures, require_content
from metamodal.models.graphs import (
    degree_sensitive_sample,
    knn_graph,
    normalised_adjacency,
    propagate,
    sym_normalise,
    to_torch_csr,
)
from metamodal.models.zoo_base import ModelData, Params, ZooModel, bpr_loss


class FREEDOMParams(Params):
    embedding_dim: int = 64
    knn_k: int = 10
    n_mm_layers: int = 1
    n_ui_layers: int = 2
    dropout: float = 0.8  # share of user–item edges pruned each epoch
    reg_weight: float = 1e-4  # weight of the modality BPR terms
    l2_weight: float = 1e-4


class FREEDOM(ZooModel):
    name = "freedom"
    Params = FREEDOMParams

    def __init__(self, data: ModelData, params: FREEDOMParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        d = params.embedding_dim
        self.content = ContentFeatures(data)
        self.init_id_embeddings(d)
        self.proj = torch.nn.ModuleList(torch.nn.Linear(dm, d) for dm in self.content.dims())
        graphs = [
            sym_normalise(knn_graph(x, present, params.knn_k))
            for x, present in data.features.values()
        ]
        self.item_graph = to_torch_csr(sum(graphs[1:], graphs[0]) / len(graphs))
        self.train_matrix = data.train
        self.full_adj = normalised_adjacency(data.train)
        self.train_adj = self.full_adj

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        rng = np.random.default_rng(10_007 * (epoch + 1))
        kept = degree_sensitive_sample(self.train_matrix, 1.0 - self.p.dropout, rng)
        self.train_adj = normalised_adjacency(sp.csr_matrix(kept))

    def _graphs_to(self, device: torch.device) -> None:
        for name in ("item_graph", "full_adj", "train_adj"):
            g = getattr(self, name)
            if g.device != device:
                setattr(self, name, g.to(device))

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user.weight, self.item.weight])
        self._graphs_to(ego.device)
        h = self.item.weight
        for _ in range(self.p.n_mm_layers):
            h = self.item_graph @ h  # frozen graph, and not symmetric after averaging: plain spmm
        adj = self.train_adj if self.training else self.full_adj
        out = propagate(adj, ego, self.p.n_ui_layers)
        return out[: self.n_users], out[self.n_users :] + h

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u_all, i_all = self.vectors()
        u = u_all[users]
        loss = bpr_loss(u, i_all[pos], i_all[neg])
        for k in range(len(self.content)):
            m = self.content.present(k)
            both = m[pos] & m[neg]
            if both.any():
                f = self.proj[k](self.content.features(k))
                loss = loss + self.p.reg_weight * bpr_loss(u[both], f[pos[both]], f[neg[both]])
        reg = (
            self.user(users).pow(2).sum()
            + self.item(pos).pow(2).sum()
            + self.item(neg).pow(2).sum()
        )
        return loss + self.p.l2_weight * reg / (2 * len(users))
