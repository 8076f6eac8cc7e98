"""A trained zoo run scoring a candidate pool under an availability pattern: how evaluation,
the agent's baselines and fusion tools, and Serve's model reranker all read a trained model.

A pattern is applied the way missingness reaches a model in the data: the unobserved content
modalities are absent for every item (the model is rebuilt on masked features — feature
propagation and MAGNET's kNN view are computed from what is present — and loads its trained
weights). With ``graph`` unobserved, nothing collaborative may be used: the model is rebuilt
on an empty interaction graph, item ID embeddings are zeroed and the user is folded in from
the history's item vectors instead of a learned user embedding; cold-user requests always fold
in (the short history is all there is).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

from metamodal.data.missing import GRAPH
from metamodal.models import ZOO, ModelData
from metamodal.train.artifacts import TrainedRun
from metamodal.train.data import normalise_features


class PoolRequest(Protocol):
    """What scoring reads of an episode (``agent.episodes.Episode`` or a served request)."""

    user: int
    history: np.ndarray
    pool: np.ndarray
    available: tuple[str, ...]
    task: str


class MaskedRunScorer:
    def __init__(self, run: TrainedRun, group_of: dict[str, str]) -> None:
        self.run, self.group_of = run, group_of
        self.name = run.model
        self._raw = run.raw_features()
        self._train = run.model_data().train
        self._cache: dict[tuple[str, ...], tuple[np.ndarray | None, np.ndarray]] = {}

    def vectors(self, pattern: tuple[str, ...]) -> tuple[np.ndarray | None, np.ndarray]:
        """(user vectors or None without graph, item vectors) under ``pattern``."""
        key = tuple(sorted(set(pattern) & ({GRAPH} | set(self.group_of.values()))))
        if key in self._cache:
            return self._cache[key]
        run, norm = self.run, self.run.config["data"]["normalise"]
        feats = {}
        for name, (x, present) in self._raw.items():
            p = present & (self.group_of[name] in pattern)
            feats[name] = (normalise_features(x, p, norm), p)
        n_users, n_items = self._train.shape
        # without graph the interaction graph itself is gone too: propagation, co-interaction
        # feature propagation and user embeddings all read it
        train = (
            self._train if GRAPH in pattern else sp.csr_matrix(self._train.shape, dtype=np.float32)
        )
        torch.manual_seed(0)
        net = ZOO[run.model](ModelData(n_users, n_items, train, feats), run.params)
        net.load_state_dict(run.state)
        if GRAPH not in pattern:
            with torch.no_grad():
                net.item.weight.zero_()
        net.eval()
        u, i = net.numpy_vectors()
        out = (u if GRAPH in pattern else None, i)
        self._cache[key] = out
        return out

    def scores(self, ep: PoolRequest) -> np.ndarray:
        users, items = self.vectors(ep.available)
        if users is None or ep.task == "cold_user":
            q = items[ep.history].mean(0) if len(ep.history) else np.zeros(items.shape[1])
        else:
            q = users[ep.user]
        return items[ep.pool] @ q
