"""Routes and the full-information reward table.

A route is a weight vector over the tools plus λ (the first stage's share, used only when
``graph`` is observed), fused by the one rule in ``fusion``. Every tool is deterministic, so
every route's NDCG@10 on every episode can be computed offline: ``reward_table`` does it for a
whole batch at once (numpy, no per-route Python loop). The router's problem is then a
full-information contextual bandit — pick the route with the highest reward given the
episode's statistics — and no reward needs sampling.

A menu is a small list of routes per bucket (pool kind × availability pattern), chosen on
training episodes by mean reward, with RuleRouter-Fuse's weights for that bucket always in it.
No route can abstain or weigh a tool negatively (either would exploit pool construction).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from metamodal.agent.fusion import fuse, zscore
from metamodal.agent.tools import ToolResult

LAMBDAS = (0.0, 0.3, 0.6)
RATIOS = ((2.0, 1.0), (1.0, 1.0), (1.0, 2.0))


@dataclass(frozen=True)
class Route:
    weights: tuple[tuple[str, float], ...]  # (tool, weight > 0), sorted by tool
    lam: float = 0.0

    @classmethod
    def of(cls, weights: dict[str, float], lam: float = 0.0) -> Route:
        total = sum(w for w in weights.values() if w > 0) or 1.0
        return cls(tuple(sorted((t, round(w / total, 3)) for t, w in weights.items() if w > 0)),
                   float(lam))  # fmt: skip

    @property
    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)

    def label(self) -> str:
        return " ".join(f"{t}={w:g}" for t, w in self.weights) + f" λ={self.lam:g}"

    def scores(self, results: dict[str, ToolResult], first: np.ndarray | None, n: int):
        return fuse(results, self.as_dict, first, self.lam, n)


def candidate_routes(tools: list[str], first: bool, max_tools: int = 3) -> list[Route]:
    """Singles, pairs at 2:1/1:1/1:2, equal triples and all-equal, crossed with ``LAMBDAS``
    when the first stage is observed."""
    ws: list[dict[str, float]] = [{t: 1.0} for t in tools]
    for a, b in itertools.combinations(tools, 2):
        ws += [{a: x, b: y} for x, y in RATIOS]
    if max_tools >= 3:
        ws += [dict.fromkeys(c, 1.0) for c in itertools.combinations(tools, 3)]
    if len(tools) > 3:
        ws.append(dict.fromkeys(tools, 1.0))
    lams = LAMBDAS if first else (0.0,)
    return list(dict.fromkeys(Route.of(w, lam) for w in ws for lam in lams))


@dataclass
class Batch:
    """Z-scored tool outputs of episodes that share a pool size: the reward table's input."""

    z: np.ndarray  # [n, tools, pool]
    usable: np.ndarray  # [n, tools] bool
    first: np.ndarray  # [n, pool] z-scored first stage (zeros where unobserved)
    has_first: np.ndarray  # [n] bool
    labels: np.ndarray  # [n, pool] bool
    n_targets: np.ndarray  # [n]
    tools: list[str]


def make_batch(steps, tools: list[str]) -> Batch:
    n, p = len(steps), len(steps[0].ep.pool)
    z, usable = np.zeros((n, len(tools), p)), np.zeros((n, len(tools)), bool)
    first, has_first = np.zeros((n, p)), np.zeros(n, bool)
    for i, s in enumerate(steps):
        if len(s.ep.pool) != p:  # the table is one array: its episodes share a pool size
            raise ValueError(f"a {len(s.ep.pool)}-candidate {s.ep.pool_kind} pool ({s.ep.task}) "
                             f"in a batch of {p}-candidate pools")  # fmt: skip
        for j, t in enumerate(tools):
            r = s.results.get(t)
            if r is not None and r.usable:
                z[i, j], usable[i, j] = zscore(r.scores), True
        if s.first is not None:
            first[i], has_first[i] = zscore(s.first), True
    labels = np.stack([s.ep.labels for s in steps])
    n_t = np.array([len(s.ep.targets) for s in steps])
    return Batch(z, usable, first, has_first, labels, n_t, list(tools))


def _ndcg(scores: np.ndarray, labels: np.ndarray, n_targets: np.ndarray, k: int = 10):
    """NDCG@k per row of ``scores`` [n, R, pool] (ties by pool order, as ``pool_ndcg``)."""
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    gains = np.take_along_axis(labels[:, None, :].repeat(scores.shape[1], 1), order, -1)
    disc = 1.0 / np.log2(np.arange(2, order.shape[-1] + 2))
    dcg = (gains * disc).sum(-1)
    ideal = np.array([disc[: min(int(t), k)].sum() for t in n_targets])
    return np.where(ideal[:, None] > 0, dcg / np.maximum(ideal[:, None], 1e-12), 0.0)


def reward_table(b: Batch, routes: list[Route], chunk: int = 64) -> np.ndarray:
    """R[episode, route] = NDCG@10 of the route's fused ranking (``fusion.fuse``'s rule)."""
    idx = {t: j for j, t in enumerate(b.tools)}
    out = np.zeros((len(b.z), len(routes)))
    for s in range(0, len(routes), chunk):
        rs = routes[s : s + chunk]
        w = np.zeros((len(rs), len(b.tools)))
        for r, route in enumerate(rs):
            for t, x in route.weights:
                if t in idx:
                    w[r, idx[t]] = x
        wu = w[None] * b.usable[:, None, :]  # [n, R, tools]
        wsum = wu.sum(-1)
        agent = np.einsum("nrt,ntp->nrp", wu, b.z) / np.maximum(wsum, 1e-12)[..., None]
        lam = np.array([route.lam for route in rs])[None, :, None]
        mixed = lam * b.first[:, None, :] + (1 - lam) * agent
        only_first = (wsum <= 0)[..., None] & b.has_first[:, None, None]
        final = np.where(b.has_first[:, None, None], mixed, agent)
        final = np.where(only_first, b.first[:, None, :], final)
        out[:, s : s + len(rs)] = _ndcg(final, b.labels, b.n_targets)
    return out
