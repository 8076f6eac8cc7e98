"""Episodes: one reranking decision the agent makes — a user, what it knows of the user's history,
a candidate pool, the targets, and which evidence sources are observed.

Evidence sources are ``graph`` (collaborative signal: the retriever's scores and the graph
model's item vectors) plus one group per content kind (``text``, ``image``, ``audio``, …), which
gathers every modality of that kind: masking ``text`` masks the raw text and its MiniLM
features alike. The *identities* of the history items are the query in every episode — a
content tool compares the history's text with the candidates' text — but with ``graph``
unobserved nothing collaborative (co-interactions, retriever scores) may be used.

Tasks: ``warm_user`` (the full training history), ``cold_user`` (only ``cold_history`` items of
it, and no user embedding: the first stage scores with the mean of those items' vectors) and
``cold_item`` (the target is an item whose training interactions the retriever never saw; every
negative of its pool is cold too, so coldness says nothing about which candidate is the target).

Pools: ``target_positive`` — the target plus negatives drawn from the *surviving* evidence, as
the MMA paper does: hard ones are the nearest neighbours of the history in each observed source
(the retriever's scores for ``graph``, profile cosine for a content group), mixed with
popularity-sampled and uniform ones. Drawing them from the retriever's own top ranks alone made
collaborative evidence anti-informative inside the pool (every method scored below a random
order on only-graph). The pool therefore depends on the availability pattern:
``EpisodeBuilder.under`` redraws it for another pattern, with the same target and history.
``fixed`` (the retriever's top-K over the whole catalogue; the targets — every held-out
item of the user — may be absent, and then the episode scores zero, as in full ranking).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from metamodal.data import Dataset
from metamodal.data.missing import GRAPH, Missingness
from metamodal.data.splits import Split

TASKS = ("warm_user", "cold_user", "cold_item")
POOL_KINDS = ("target_positive", "fixed")


def evidence_groups(ds: Dataset) -> dict[str, list[str]]:
    """``{"graph": [], kind: [modality names of that kind]}`` in a stable order."""
    groups: dict[str, list[str]] = {GRAPH: []}
    for name, mod in ds.modalities.items():
        groups.setdefault(mod.kind, []).append(name)
    return groups


@dataclass(frozen=True)
class Episode:
    user: int
    history: np.ndarray  # item indices the agent may use as the user's history
    pool: np.ndarray  # candidate item indices
    targets: np.ndarray  # held-out positives (a target-positive pool holds exactly one)
    first_stage: np.ndarray  # the retriever's score per candidate
    cold: np.ndarray  # bool per candidate: no training interactions reached the retriever
    available: tuple[str, ...]  # observed evidence sources
    task: str
    pool_kind: str
    key: int = 0  # seeds the pool's draw, so the same episode under a pattern is the same pool

    @property
    def labels(self) -> np.ndarray:
        return np.isin(self.pool, self.targets)

    def with_available(self, available: tuple[str, ...]) -> Episode:
        return replace(self, available=tuple(available))


HistoryScoreFn = Callable[[np.ndarray], np.ndarray]  # history item indices -> scores [n_items]
# (content group, history item indices) -> scores [n_items] (−inf: cannot score), or None
ContentScoreFn = Callable[[str, np.ndarray], "np.ndarray | None"]


class PoolConfig(BaseModel):
    """How episodes' candidate pools are drawn (``mma run``'s ``pool`` section). Of a
    target-positive pool's negatives, ``hard_share`` are drawn from the ``hard_depth`` nearest
    neighbours of the history in each surviving source, ``popular_share`` are
    popularity-sampled, the rest uniform."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pool_size: int = Field(20, ge=2)  # target-positive pools
    fixed_k: int = Field(50, ge=1)  # fixed pools: the retriever's top-K
    hard_share: float = Field(0.1, ge=0, le=1)
    hard_depth: int = Field(400, ge=1)  # benchmarks/pool_recipe.py chose both on validation
    popular_share: float = Field(0.25, ge=0, le=1)
    cold_history: int = Field(2, ge=1)  # items a cold user keeps


class EpisodeBuilder:
    """Builds episodes of one split part from the retriever that the agent sits behind.

    ``user_scores(u)`` is the retriever's full-catalogue score vector for a warm user;
    ``history_scores(items)`` scores from a history alone (cold users): both come from a model
    trained on the split's training part with the same ``miss`` (cold items removed)."""

    def __init__(
        self,
        ds: Dataset,
        split: Split,
        user_scores: Callable[[int], np.ndarray],
        history_scores: HistoryScoreFn,
        miss: Missingness | None = None,
        cfg: PoolConfig | None = None,
        content_scores: ContentScoreFn | None = None,
        seed: int = 0,
    ) -> None:
        self.ds, self.split, self.cfg, self.seed = ds, split, cfg or PoolConfig(), seed
        self.user_scores, self.history_scores = user_scores, history_scores
        self.content_scores = content_scores
        # (part, task) -> episodes left out because too few negatives could fill their pool
        self.short_pools: Counter[tuple[str, str]] = Counter()
        self.cold_items = miss.cold_items if miss is not None else np.zeros(ds.n_items, bool)
        inter = ds.interactions
        self.seen: dict[int, set[int]] = {}
        for idx in np.concatenate([split.train, split.valid, split.test]):
            self.seen.setdefault(int(inter.user[idx]), set()).add(int(inter.item[idx]))
        self.train_items: dict[int, np.ndarray] = {}
        for u, i in zip(inter.user[split.train], inter.item[split.train], strict=True):
            self.train_items.setdefault(int(u), []).append(int(i))  # type: ignore[arg-type]
        self.train_items = {u: np.array(sorted(v)) for u, v in self.train_items.items()}
        counts = np.bincount(inter.item[split.train], minlength=ds.n_items).astype(np.float64)
        counts[self.cold_items] = 0.0  # the retriever never saw those interactions
        self.popularity = counts
        # a pattern's code seeds its pool draw: one bit per evidence source
        self.sources = sorted([GRAPH, *{m.kind for m in ds.modalities.values()}])

    def _history(self, user: int, task: str, rng: np.random.Generator) -> np.ndarray:
        hist = self.train_items.get(user, np.zeros(0, np.int64))
        if task == "cold_user" and len(hist) > self.cfg.cold_history:
            hist = np.sort(rng.choice(hist, self.cfg.cold_history, replace=False))
        return hist

    def _scores(self, user: int, task: str, hist: np.ndarray) -> np.ndarray:
        s = self.history_scores(hist) if task == "cold_user" else self.user_scores(user)
        return np.asarray(s, dtype=np.float64)

    def _hard(self, source: str, user: int, task: str, hist: np.ndarray) -> np.ndarray | None:
        """All items' scores under one observed source (higher: nearer the history)."""
        if source == GRAPH:
            return self._scores(user, task, hist)
        if self.content_scores is None or not len(hist):
            return None
        return self.content_scores(source, hist)

    def _negatives(
        self, user: int, task: str, hist: np.ndarray, banned: np.ndarray,
        available: tuple[str, ...], rng: np.random.Generator,
    ) -> list[int]:  # fmt: skip
        """Hard negatives round-robin over the observed sources' neighbour lists (each its
        ``hard_depth`` nearest items in a random order; 1 keeps the order, but the very nearest
        are exactly what that source's own tool ranks first, which makes the surviving evidence
        anti-informative inside the pool),
        then popularity-sampled ones, then uniform ones; a cold target's negatives all cold."""
        c, n_neg = self.cfg, self.cfg.pool_size - 1
        banned = banned | (~self.cold_items if task == "cold_item" else self.cold_items)
        ranked = []
        n_hard = round(c.hard_share * n_neg)
        for src in available if n_hard else ():
            s = self._hard(src, user, task, hist)
            if s is not None:
                near = top_ranked(np.where(banned, -np.inf, s), max(c.hard_depth, 2 * n_hard))
                head = rng.permutation(near[: c.hard_depth]).tolist()
                ranked.append(head + near[c.hard_depth :])
        n_hard = n_hard if ranked else 0
        picks: list[int] = []
        pos = [0] * len(ranked)
        while len(picks) < n_hard and any(p < len(r) for p, r in zip(pos, ranked, strict=True)):
            for j, r in enumerate(ranked):
                while pos[j] < len(r) and banned[r[pos[j]]]:
                    pos[j] += 1
                if pos[j] < len(r) and len(picks) < n_hard:
                    picks.append(r[pos[j]])
                    banned[r[pos[j]]] = True
        free = np.flatnonzero(~banned)
        w = self.popularity[free]
        n_pop = min(round(c.popular_share * n_neg), int((w > 0).sum()))
        if n_pop:
            got = rng.choice(free, n_pop, replace=False, p=w / w.sum()).tolist()
            picks += got
            banned[got] = True
        free = np.flatnonzero(~banned)
        n_rest = min(n_neg - len(picks), len(free))
        picks += rng.choice(free, n_rest, replace=False).tolist() if n_rest else []
        return picks

    def target_positive(
        self, user: int, target: int, task: str, available: tuple[str, ...], key: int = 0
    ) -> Episode:
        """The cold user's history and the pool are drawn from ``key`` (and the pool from the
        pattern too), so an episode does not depend on which others were built, and ``under``
        rebuilds the same pool for the same pattern."""
        rng = np.random.default_rng([self.seed, key, 1 << 16, TASKS.index(task)])
        hist = self._history(user, task, rng)
        return self._build(user, target, task, hist, tuple(available), key)

    def _build(
        self, user: int, target: int, task: str, hist: np.ndarray, available: tuple, key: int
    ) -> Episode:
        scores = self._scores(user, task, hist)
        banned = np.zeros(self.ds.n_items, bool)
        banned[list(self.seen.get(user, ()))] = True
        banned[target] = True
        code = sum(1 << i for i, g in enumerate(self.sources) if g in available)
        rng = np.random.default_rng([self.seed, key, code])
        picks = self._negatives(user, task, hist, banned, available, rng)
        pool = rng.permutation(np.array([target, *picks], dtype=np.int64))
        return Episode(
            user, hist, pool, np.array([target]), scores[pool], self.cold_items[pool],
            tuple(available), task, "target_positive", key,
        )  # fmt: skip

    def under(self, ep: Episode, available: tuple[str, ...]) -> Episode:
        """The same decision under another availability pattern: a target-positive pool is
        redrawn from what that pattern observes; a fixed pool stays the retriever's top-K."""
        if ep.pool_kind != "target_positive":
            return ep.with_available(available)
        return self._build(ep.user, int(ep.targets[0]), ep.task, ep.history, available, ep.key)

    def fixed(self, user: int, part: str, available: tuple[str, ...]) -> Episode | None:
        """The retriever's top-K for a warm user, with every held-out item of ``part`` a target;
        None when the user has no such item."""
        inter, idx = self.ds.interactions, getattr(self.split, part)
        targets = np.unique(inter.item[idx][inter.user[idx] == user])
        if not len(targets):
            return None
        hist = self._history(user, "warm_user", np.random.default_rng(0))
        scores = self._scores(user, "warm_user", hist)
        scores[hist] = -np.inf  # the evaluator's protocol: training items are never ranked
        if part == "test":
            inter_valid = self.split.valid
            scores[inter.item[inter_valid][inter.user[inter_valid] == user]] = -np.inf
        pool = np.argsort(-scores, kind="stable")[: self.cfg.fixed_k]
        return Episode(
            user, hist, pool, targets, scores[pool], self.cold_items[pool],
            tuple(available), "warm_user", "fixed",
        )  # fmt: skip

    def target_positive_part(
        self, part: str, task: str, available: tuple[str, ...], limit: int | None, seed: int,
        users: set[int] | None = None,
    ) -> list[Episode]:  # fmt: skip
        """Up to ``limit`` episodes, one per held-out interaction of ``part`` (of ``users``, when
        given) that fits the task — cold-item episodes need a cold target, the others a warm one
        — drawn in a seeded order, so only the episodes kept are built. A pool that too few
        eligible negatives leave short of ``pool_size`` (a small catalogue's cold items) would be
        an easier task: it is left out, counted in ``short_pools``, and the next draw replaces it."""
        inter, idx = self.ds.interactions, getattr(self.split, part)
        cold_t = self.cold_items[inter.item[idx]]
        idx = idx[cold_t] if task == "cold_item" else idx[~cold_t]
        idx = idx[np.isin(inter.user[idx], list(self.train_items))]  # someone to query with
        if users is not None:
            idx = idx[np.isin(inter.user[idx], list(users))]
        order = np.random.default_rng([self.seed, seed, TASKS.index(task)]).permutation(idx)
        want = len(order) if limit is None else limit
        kept: list[Episode] = []
        for i in order:
            if len(kept) == want:
                break
            ep = self.target_positive(int(inter.user[i]), int(inter.item[i]), task, available, int(i))
            if len(ep.pool) == self.cfg.pool_size:
                kept.append(ep)
            else:
                self.short_pools[(part, task)] += 1
        return sorted(kept, key=lambda e: e.key)


def top_ranked(scores: np.ndarray, m: int) -> list[int]:
    """The item indices of ``np.argsort(-scores, kind="stable")`` up to the ``m``-th, and every
    item tied with it — what a round-robin over neighbour lists can reach, without sorting the
    whole catalogue. Items scored −inf (banned, or not scorable) rank last, as in the full sort."""
    if m >= len(scores):
        return np.argsort(-scores, kind="stable").tolist()
    kth = np.partition(-scores, m)[m]
    head = np.flatnonzero(-scores <= kth)
    return head[np.argsort(-scores[head], kind="stable")].tolist()


def pool_ndcg(scores: np.ndarray, ep: Episode, k: int = 10) -> float:
    """NDCG@k of ranking the pool by ``scores`` (ties by pool order). The ideal DCG counts every
    target, so targets a fixed pool missed cost what they would in full ranking."""
    order = np.argsort(-scores, kind="stable")[:k]
    gains = ep.labels[order].astype(np.float64)
    dcg = float((gains / np.log2(np.arange(2, len(order) + 2))).sum())
    n_ideal = min(len(ep.targets), k)
    ideal = float((1.0 / np.log2(np.arange(2, n_ideal + 2))).sum())
    return dcg / ideal if ideal > 0 else 0.0
