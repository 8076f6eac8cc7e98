"""Balanced missingness-task sampling: every batch draws evenly over the (availability pattern ×
task) buckets — all non-empty subsets of the evidence sources, the single-observed-modality
(OOMA) ones included — so the policy never learns only the common full-evidence case.

Buckets are visited in a shuffled round-robin that carries over between batches: within a batch
counts differ by at most one, and over any run of whole cycles they are exactly equal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from metamodal.agent.episodes import Episode
from metamodal.data.missing import availability_patterns

Bucket = tuple[tuple[str, ...], str]


def make_buckets(sources: list[str], tasks: list[str]) -> list[Bucket]:
    return [(p, t) for p in availability_patterns(sources) for t in tasks]


class BalancedSampler:
    def __init__(
        self,
        episodes: dict[str, list[Episode]],
        sources: list[str],
        seed: int = 0,
        under: Callable[[Episode, tuple[str, ...]], Episode] | None = None,
    ):
        """``episodes``: task -> base episodes, put under each bucket's pattern by ``under``
        (``EpisodeBuilder.under``: a target-positive pool is redrawn from what it observes)."""
        empty = [t for t, eps in episodes.items() if not eps]
        if empty:
            raise ValueError(f"no episodes for task(s) {empty}: cannot balance over them")
        self.episodes = episodes
        self.under = under or (lambda ep, pattern: ep.with_available(pattern))
        self.buckets = make_buckets(sources, list(episodes))
        self.rng = np.random.default_rng(seed)
        self._order: list[int] = []

    def _next_bucket(self) -> Bucket:
        if not self._order:
            self._order = self.rng.permutation(len(self.buckets)).tolist()
        return self.buckets[self._order.pop()]

    def batch(self, size: int) -> list[tuple[Bucket, Episode]]:
        out = []
        for _ in range(size):
            pattern, task = self._next_bucket()
            pool = self.episodes[task]
            ep = pool[int(self.rng.integers(len(pool)))]
            out.append(((pattern, task), self.under(ep, pattern)))
        return out
