"""DRAGON (Zhou et al., 2023, "Enhancing Dyadic Relations with Homogeneous Graphs for
Multimodal Recommendation"; MARGO's backbone): dual graphs over every content modality.

- Heterogeneous graph, per modality: users carry a learned preference vector for the modality
  and items its projected features (absent rows zero); both propagate over the user–item graph
  (LightGCN's layer mean, ``n_ui_layers``) and the shared ID embeddings are added.
- The modalities' representations are concatenated: items as they are, users weighted by a
  learned per-user softmax over the modalities (DRAGON's ``cat`` construction).
- Homogeneous graphs: items add their neighbours over the kNN item–item graph (cosine among
  the items that have each modality, symmetric-normalised, averaged over the modalities; built
  once from the features the model is given, so a masked modality adds no edges), and users
  their ``user_k`` most co-occurring users, weighted by a softmax over the shared counts.
- Loss: BPR plus ``reg_weight`` on the users' modality preferences.

What differs from the authors' code: propagation is LightGCN's parameter-free layer mean
rather than MMGCN's GCN layer, the item–item graph weights modalities equally rather than by a
fixed image weight, and there is no training-time dropping of modality edges; scores stay one
dot product, so any ANN index serves the model.
"""

from __future__ import annotations

import torch

from metamodal.models.content import ContentFeatures, require_content
from metamodal.models.graphs import (
    SparseOp,
    cooccurrence_topk,
    knn_graph,
    normalised_adjacency,
    propagate,
    sym_normalise,
)
from metamodal.models.zoo_base import ModelData, Params, ZooModel, bpr_loss


class DRAGONParams(Params):
    embedding_dim: int = 64
    n_ui_layers: int = 1  # per-modality hops over the user–item graph (the authors use 1)
    knn_k: int = 10  # item–item neighbours per modality
    n_mm_layers: int = 1  # hops over the item–item graph
    user_k: int = 40  # co-occurring users each user adds (the authors' k)
    reg_weight: float = 1e-4  # on the users' modality preferences


class DRAGON(ZooModel):
    name = "dragon"
    Params = DRAGONParams

    def __init__(self, data: ModelData, params: DRAGONParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        d = params.embedding_dim
        self.content = ContentFeatures(data)
        self.init_id_embeddings(d)
        m = len(self.content)
        self.prefs = torch.nn.Parameter(torch.empty(m, data.n_users, d))
        torch.nn.init.xavier_uniform_(self.prefs.view(-1, d))
        self.proj = torch.nn.ModuleList(torch.nn.Linear(dm, d) for dm in self.content.dims())
        self.user_logits = torch.nn.Parameter(torch.zeros(data.n_users, m))  # uniform at start
        graphs = [sym_normalise(knn_graph(x, present, params.knn_k)) for x, present in data.features.values()]
        self.item_graph = SparseOp(sum(graphs[1:], graphs[0]) / len(graphs))
        self.user_graph = SparseOp(cooccurrence_topk(data.train, params.user_k))
        self.adj = normalised_adjacency(data.train)

    def _graphs_to(self, device: torch.device) -> None:
        if self.adj.device != device:
            self.adj = self.adj.to(device)

    def modality_reps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [M, n_users, d], items [M, n_items, d]): each modality's propagated
        preference/feature representation plus the ID embeddings."""
        self._graphs_to(self.item.weight.device)
        ids = torch.cat([self.user.weight, self.item.weight])
        users, items = [], []
        for k in range(len(self.content)):
            f = self.proj[k](self.content.features(k)) * self.content.present(k)[:, None]
            h = propagate(self.adj, torch.cat([self.prefs[k], f]), self.p.n_ui_layers) + ids
            users.append(h[: self.n_users])
            items.append(h[self.n_users :])
        return torch.stack(users), torch.stack(items)

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, i = self.modality_reps()
        w = torch.softmax(self.user_logits, 1)  # [n_users, M]
        users = (u * w.T[:, :, None]).permute(1, 0, 2).reshape(self.n_users, -1)
        items = i.permute(1, 0, 2).reshape(self.n_items, -1)
        h = items
        for _ in range(self.p.n_mm_layers):
            h = self.item_graph @ h  # frozen; not symmetric after averaging
        return users + self.user_graph @ users, items + h

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u, i = self.vectors()
        reg = self.prefs[:, users].pow(2).mean()
        return bpr_loss(u[users], i[pos], i[neg]) + self.p.reg_weight * reg
