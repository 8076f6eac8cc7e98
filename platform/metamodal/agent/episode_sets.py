"""Which episodes one seed of ``metamodal mma run`` reads: validation users halved into *fit*
and *select* (seeded), test users for *test*; per task a capped number of target-positive
episodes, each crossed with every availability pattern (its pool redrawn from what the pattern
observes; test: the OOMA patterns), then the users' fixed pools."""

from __future__ import annotations

import numpy as np

from metamodal.agent.config import MMAConfig
from metamodal.agent.episodes import TASKS, Episode, EpisodeBuilder
from metamodal.agent.evidence import EvidenceStore
from metamodal.data.missing import availability_patterns, ooma_patterns


def split_users(users: np.ndarray, seed: int) -> tuple[set[int], set[int]]:
    perm = np.random.default_rng(seed).permutation(np.unique(users))
    half = len(perm) // 2
    return set(perm[:half].tolist()), set(perm[half:].tolist())


def base_episodes(b: EpisodeBuilder, part: str, users, per_task: int, full, seed) -> list[Episode]:
    return [e for task in TASKS for e in b.target_positive_part(part, task, full, per_task, seed, users)]


def fixed_episodes(b: EpisodeBuilder, part: str, users, n: int, full, seed) -> list[Episode]:
    users = np.random.default_rng([seed, 11]).permutation(sorted(users))[:n]
    return [e for u in sorted(users.tolist()) if (e := b.fixed(int(u), part, full)) is not None]


def episodes_of(b, part, users, per_task, n_fixed, patterns, full, seed) -> list[Episode]:
    """Target-positive episodes crossed with ``patterns`` (each pool redrawn from what the
    pattern observes), then the fixed pools."""
    base = base_episodes(b, part, users, per_task, full, seed)
    tp = [b.under(e, p) for p in patterns for e in base]
    return tp + fixed_episodes(b, part, users, n_fixed, full, seed)


def seed_episodes(seed: int, cfg: MMAConfig, run, store: EvidenceStore, retriever) -> tuple:
    """(fit, select, test episodes, pools left out per part/task): validation users halved into fit and select, each
    target-positive episode crossed with every pattern (test: the OOMA patterns), plus the
    fixed pools. Pools too short to be the same task are left out and counted."""
    ds, split = run.ds, run.split
    sources, full = store.sources(), tuple(store.sources())
    b = EpisodeBuilder(ds, split, retriever.user_scores, retriever.history_scores, run.miss,
                       cfg.pool, content_scores=store.catalogue_scores, seed=seed)  # fmt: skip
    fit_u, sel_u = split_users(ds.interactions.user[split.valid], seed)
    test_u = set(np.unique(ds.interactions.user[split.test]).tolist())
    patterns = availability_patterns(sources)
    fit_e = episodes_of(b, "valid", fit_u, cfg.fit_episodes, cfg.fit_fixed_users, patterns, full, seed)
    sel_e = episodes_of(b, "valid", sel_u, cfg.select_episodes, cfg.select_fixed_users, patterns, full, seed)
    test_e = episodes_of(b, "test", test_u, cfg.test_episodes, cfg.fixed_users, ooma_patterns(sources), full, seed)
    short = {f"{p}/{t}": n for (p, t), n in b.short_pools.items() if n}
    return fit_e, sel_e, test_e, short
