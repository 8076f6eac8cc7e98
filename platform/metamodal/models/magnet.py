"""MAGNET (../shared/seeds/magnet_graph_experts.txt): dual-view graph learning and a sparse
mixture of graph experts with modality roles, trained with an entropy-triggered two-stage
routing schedule.

- Dual view: LightGCN propagation over the interaction graph, and in parallel over an augmented
  view that adds content-induced kNN item–item edges (weight ``aug_weight``); the two are fused
  lightly by one learned gate, h = (1 - λ) h_obs + λ h_aug.
- Sources: behaviour (the fused graph vector) and one projection per content modality. Experts
  follow role templates over the sources: ``dominant`` (one source carries ``dominant_share``,
  the rest split the remainder), ``balanced`` (equal) and ``complementary`` (a pair, half each).
  A template's weight on a source the item lacks is dropped and the rest renormalised. Each
  expert maps its template mix through its own linear layer.
- Routing: an item-conditioned router (on the item's graph vector, which is interaction-
  conditioned) keeps the top-K experts and renormalises their gates; the item vector is the
  gated sum, so scores remain dot products (ANN-servable).
- Schedule: stage 1 (coverage) adds -w·H(mean routing) to spread load over experts; after each
  epoch the usage entropy is checked, and once it reaches ``switch_ratio``·log(E) for
  ``switch_patience`` epochs (or at ``max_stage1_epochs``), stage 2 (specialisation) adds
  +w·mean H(per-item routing) instead. The stage is a buffer: checkpoints and resumes keep it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.sparse as sp
import torch

from metamodal.models.content import ContentFeatures, require_content
from metamodal.models.graphs import knn_graph, normalised_adjacency, propagate
from metamodal.models.zoo_base import ModelData, Params, ZooModel, bpr_loss, l2_reg


class MAGNETParams(Params):
    embedding_dim: int = 64
    n_layers: int = 2
    knn_k: int = 10
    aug_weight: float = 0.5
    top_k: int = 2
    dominant_share: float = 0.6
    entropy_weight: float = 0.01
    switch_ratio: float = 0.9
    switch_patience: int = 2
    max_stage1_epochs: int = 30
    reg_weight: float = 1e-4


def role_templates(n_sources: int, dominant_share: float) -> tuple[torch.Tensor, list[str]]:
    """[E, S] source mixes and their names: S dominant, 1 balanced, C(S, 2) complementary."""
    rows, names = [], []
    rest = (1 - dominant_share) / max(1, n_sources - 1)
    for s in range(n_sources):
        rows.append([dominant_share if t == s else rest for t in range(n_sources)])
        names.append(f"dominant:{s}")
    rows.append([1.0 / n_sources] * n_sources)
    names.append("balanced")
    for a, b in itertools.combinations(range(n_sources), 2):
        rows.append([0.5 if t in (a, b) else 0.0 for t in range(n_sources)])
        names.append(f"complementary:{a}+{b}")
    return torch.tensor(rows, dtype=torch.float32), names


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


class EntropySchedule:
    """Stage 1 until the usage entropy has stayed at ``ratio``·log(E) for ``patience`` epochs."""

    def __init__(self, n_experts: int, ratio: float, patience: int, max_stage1: int) -> None:
        self.target = ratio * math.log(n_experts)
        self.patience, self.max_stage1 = patience, max_stage1

    def next_stage(
        self, stage: int, streak: int, usage_entropy: float, epoch: int
    ) -> tuple[int, int]:
        """(stage, streak) after an epoch whose mean routing had ``usage_entropy``."""
        if stage == 2:
            return 2, streak
        streak = streak + 1 if usage_entropy >= self.target else 0
        if streak >= self.patience or epoch + 1 >= self.max_stage1:
            return 2, streak
        return 1, streak


class MAGNET(ZooModel):
    name = "magnet"
    Params = MAGNETParams

    def __init__(self, data: ModelData, params: MAGNETParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        d = params.embedding_dim
        self.content = ContentFeatures(data)
        self.init_id_embeddings(d)
        knn = sum(knn_graph(x, m, params.knn_k) for x, m in data.features.values())
        knn = ((knn + knn.T) > 0).astype(np.float32) * params.aug_weight
        self.adj_obs = normalised_adjacency(data.train)
        self.adj_aug = normalised_adjacency(data.train, sp.csr_matrix(knn))
        self.view_gate = torch.nn.Parameter(torch.zeros(1))
        self.proj = torch.nn.ModuleList(torch.nn.Linear(dm, d) for dm in self.content.dims())
        n_src = 1 + len(self.content)
        templates, self.expert_names = role_templates(n_src, params.dominant_share)
        self.register_buffer("templates", templates)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(d, d) for _ in range(len(templates)))
        for e in self.experts:  # start as identity maps: the mix itself, refined by training
            torch.nn.init.eye_(e.weight)
            torch.nn.init.zeros_(e.bias)
        self.router = torch.nn.Linear(d, len(templates))
        self.register_buffer("stage", torch.tensor(1))
        self.register_buffer("streak", torch.tensor(0))
        self.schedule = EntropySchedule(
            len(templates), params.switch_ratio, params.switch_patience, params.max_stage1_epochs
        )
        self._usage: list[torch.Tensor] = []

    def set_epoch(self, epoch: int) -> None:
        if self._usage and epoch > self.epoch:  # judge the epoch that just ended
            h = float(entropy(torch.stack(self._usage).mean(0)))
            stage, streak = self.schedule.next_stage(
                int(self.stage), int(self.streak), h, self.epoch
            )
            self.stage.fill_(stage)
            self.streak.fill_(streak)
        self._usage = []
        super().set_epoch(epoch)

    def _graph(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user.weight, self.item.weight])
        for name in ("adj_obs", "adj_aug"):
            if getattr(self, name).device != ego.device:
                setattr(self, name, getattr(self, name).to(ego.device))
        lam = torch.sigmoid(self.view_gate)
        out = (1 - lam) * propagate(self.adj_obs, ego, self.p.n_layers) + lam * propagate(
            self.adj_aug, ego, self.p.n_layers
        )
        return out[: self.n_users], out[self.n_users :]

    def route(self, g_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n_items, E] sparse gates (top-K of the router's softmax, renormalised) and the full
        softmax, which the load-balancing loss reads."""
        probs = torch.softmax(self.router(g_items), 1)
        top = probs.topk(min(self.p.top_k, probs.shape[1]), 1)
        gates = torch.zeros_like(probs).scatter(1, top.indices, top.values)
        return gates / gates.sum(1, keepdim=True), probs

    def items(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        users, g = self._graph()
        sources = torch.stack(
            [g] + [self.proj[k](self.content.features(k)) for k in range(len(self.content))], 1
        )
        ones = torch.ones(self.n_items, 1, dtype=torch.bool, device=g.device)
        present = torch.cat([ones, self.content.mask()], 1).float()  # [I, S]
        mix = self.templates[None] * present[:, None]  # [I, E, S]: drop what the item lacks
        mix = mix / mix.sum(2, keepdim=True).clamp_min(1e-12)
        mixed = torch.einsum("ies,isd->ied", mix, sources)
        out = torch.stack([e(mixed[:, k]) for k, e in enumerate(self.experts)], 1)  # [I, E, d]
        gates, probs = self.route(g)
        return users, (gates[:, :, None] * out).sum(1), probs

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items, _ = self.items()
        return users, items

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u_all, i_all, probs = self.items()
        loss = bpr_loss(u_all[users], i_all[pos], i_all[neg])
        loss = loss + self.p.reg_weight * l2_reg(self.user(users), self.item(pos), self.item(neg))
        batch_probs = probs[torch.cat([pos, neg])]
        usage = batch_probs.mean(0)
        self._usage.append(usage.detach().cpu())
        if int(self.stage) == 1:  # coverage: spread the load over the experts
            return loss - self.p.entropy_weight * entropy(usage)
        return loss + self.p.entropy_weight * entropy(batch_probs).mean()  # specialise
