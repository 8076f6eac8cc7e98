"""The zoo's model interface (MMRec's, trimmed): a loss for a batch of (user, positive,
negative) triples, user and item vectors (what ANN retrieval indexes), and full-catalogue scores
derived from them. Each model is one file with its own typed ``Params``; the torch module holds
the maths, the training loop and Ray Train live in ``metamodal.train``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ModelData:
    """What a model may see: sizes, the training interactions, and content features (name ->
    (features [n_items, d], present [n_items])) with missing rows already zeroed by the caller."""

    n_users: int
    n_items: int
    train: sp.csr_matrix
    features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class ZooModel(torch.nn.Module):
    name: str = "zoo"
    Params: type[Params] = Params

    def __init__(self, data: ModelData, params: Params) -> None:
        super().__init__()
        self.n_users, self.n_items, self.p = data.n_users, data.n_items, params
        self.epoch = 0

    def init_id_embeddings(self, dim: int) -> None:
        """User and item ID embeddings, Xavier-initialised (in this order: seeds stay comparable)."""
        self.user = torch.nn.Embedding(self.n_users, dim)
        self.item = torch.nn.Embedding(self.n_items, dim)
        torch.nn.init.xavier_uniform_(self.user.weight)
        torch.nn.init.xavier_uniform_(self.item.weight)

    def set_epoch(self, epoch: int) -> None:
        """Called before each epoch (and before final scoring): staged models switch here."""
        self.epoch = epoch

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors [n_users, d], item vectors [n_items, d]); score = dot product."""
        raise NotImplementedError

    @torch.no_grad()
    def numpy_vectors(self, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
        """``vectors()`` as CPU arrays: what faiss, the first stage and the masked scorers read
        (float64 where scores are compared across routes, float32 for faiss)."""
        u, i = self.vectors()
        return u.detach().cpu().numpy().astype(dtype), i.detach().cpu().numpy().astype(dtype)

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """BPR on the scoring vectors plus L2 on the batch's ID embeddings (``self.user``,
        ``self.item``, ``p.reg_weight``): BPR-MF, LightGCN, VBPR and early fusion share it;
        models with other terms override it."""
        u_all, i_all = self.vectors()
        reg = l2_reg(self.user(users), self.item(pos), self.item(neg))
        return bpr_loss(u_all[users], i_all[pos], i_all[neg]) + self.p.reg_weight * reg

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The loss, through ``forward`` so DDP's hooks see it and average the gradients."""
        return self.loss(users, pos, neg)

    @torch.no_grad()
    def scorer(self):
        """A ``users -> scores [len(users), n_items]`` function over vectors computed once."""
        self.eval()
        u, i = self.vectors()
        u, i = u.detach(), i.detach()
        return lambda users: u[users.to(u.device)] @ i.T


def bpr_loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    return bpr_from_scores((u * p).sum(-1), (u * n).sum(-1))


def bpr_from_scores(y_pos: torch.Tensor, y_neg: torch.Tensor) -> torch.Tensor:
    return -torch.nn.functional.logsigmoid(y_pos - y_neg).mean()


def info_nce(a: torch.Tensor, b: torch.Tensor, temp: float, targets: torch.Tensor | None = None,
             reduction: str = "mean") -> torch.Tensor:  # fmt: skip
    """InfoNCE over cosine logits: row i of ``a`` against every row of ``b``, its positive
    ``b[targets[i]]`` (row i without ``targets``). Written as a cross-entropy, whose fused
    log-softmax makes fewer passes over the batch × batch logits than logsumexp minus the
    diagonal, and the temperature scales ``a`` rather than the logits: the same loss, cheaper."""
    if len(a) == 0:
        return a.new_zeros(())
    logits = (torch.nn.functional.normalize(a, dim=1) / temp) @ torch.nn.functional.normalize(b, dim=1).T
    if targets is None:
        targets = torch.arange(len(a), device=a.device)
    return torch.nn.functional.cross_entropy(logits, targets, reduction=reduction)


def l2_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """Squared L2 of the batch's embeddings over the batch size (LightGCN's ½‖E⁰‖² / B)."""
    return sum(t.pow(2).sum() for t in tensors) / (2 * len(tensors[0]))
