"""RuleRouter-Fuse, MMA's deterministic control: the same tools and the same fusion rule, routed
by a fixed rule — call every tool, weigh the ones that answered by per-tool weights and fuse
with the first stage by λ — where the weights and λ are tuned on validation episodes by
coordinate ascent over a small grid, and nothing is learned per episode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metamodal.agent.episodes import Episode, pool_ndcg
from metamodal.agent.fusion import fuse
from metamodal.agent.tools import ToolResult

WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
LAMBDA_GRID = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)

Observed = tuple[Episode, dict[str, ToolResult], np.ndarray | None]  # (episode, results, stage1)


@dataclass
class RuleRouter:
    weights: dict[str, float] = field(default_factory=dict)
    lam: float = 0.5

    def scores(self, ep: Episode, results: dict[str, ToolResult], first: np.ndarray | None):
        w = {t: self.weights.get(t, 1.0) for t, r in results.items() if r.usable}
        return fuse(results, w, first, self.lam, len(ep.pool))

    def mean_ndcg(self, observed: list[Observed], k: int = 10) -> float:
        return float(np.mean([pool_ndcg(self.scores(ep, r, f), ep, k) for ep, r, f in observed]))

    @classmethod
    def fit(cls, observed: list[Observed], tools: list[str], rounds: int = 2) -> RuleRouter:
        """Coordinate ascent on mean NDCG@10 over ``observed`` (validation episodes)."""
        best = cls({t: 1.0 for t in tools}, 0.5)
        score = best.mean_ndcg(observed)
        for _ in range(rounds):
            for t in tools:
                for w in WEIGHT_GRID:
                    cand = cls({**best.weights, t: w}, best.lam)
                    s = cand.mean_ndcg(observed)
                    if s > score + 1e-9:
                        best, score = cand, s
            for lam in LAMBDA_GRID:
                cand = cls(dict(best.weights), lam)
                s = cand.mean_ndcg(observed)
                if s > score + 1e-9:
                    best, score = cand, s
        return best
