"""Observed episodes grouped by bucket: each episode's tool results, first stage, statistics,
prompt and, once a menu is known, its reward for every route on the menu.

A bucket is (pool kind, availability pattern): target-positive episodes are crossed with every
pattern (each redrawn from what that pattern observes, ``EpisodeBuilder.under``); fixed pools
are the retriever's top-K with everything observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metamodal.agent.env import AgentEnv, Step
from metamodal.agent.episodes import Episode
from metamodal.agent.menus import Bucket, Menu
from metamodal.agent.routes import make_batch, reward_table
from metamodal.agent.stats import StatsCodec, bucket_prompt, episode_stats, history_bucket


@dataclass
class BucketRows:
    steps: list[Step]
    stats: list[dict[str, float]]
    rewards: np.ndarray | None = None  # [n, menu]
    prompts: list[str] = field(default_factory=list)
    bucket_prompts: list[str] = field(default_factory=list)
    x: np.ndarray | None = None  # [n, statistics] the gate's input

    def __len__(self) -> int:
        return len(self.steps)


Rows = dict[Bucket, BucketRows]


def observe_rows(env: AgentEnv, episodes: list[Episode]) -> Rows:
    rows: Rows = {}
    for ep in episodes:
        step = env.observe(ep)
        key = (ep.pool_kind, tuple(ep.available))
        r = rows.setdefault(key, BucketRows([], []))
        r.steps.append(step)
        r.stats.append(episode_stats(env.store.view(ep), step.results, step.first))
    return rows


def render_rows(rows: Rows, codec: StatsCodec) -> None:
    for br in rows.values():
        br.prompts = [codec.render(st, s.ep.task, len(s.ep.pool))
                      for s, st in zip(br.steps, br.stats, strict=True)]  # fmt: skip
        br.bucket_prompts = [
            bucket_prompt(s.ep.task, s.ep.pool_kind, len(s.ep.pool), s.usable,
                          s.first is not None, history_bucket(len(s.ep.history)))
            for s in br.steps
        ]  # fmt: skip
        br.x = np.stack([codec.vector(st) for st in br.stats])


def score_rows(rows: Rows, menus: dict[Bucket, Menu], tools: list[str]) -> None:
    for key, br in rows.items():
        br.rewards = reward_table(make_batch(br.steps, tools), menus[key].routes)


def shuffled_within(rows: Rows, seed: int) -> Rows:
    """The statistics permuted among a bucket's episodes of the same task (prompts and gate
    inputs alike), rewards left in place: the task stays known, so whatever routing on the task
    alone gains survives, and whatever per-episode routing gained beyond it must vanish."""
    out: Rows = {}
    rng = np.random.default_rng(seed)
    for key, br in rows.items():
        p = np.arange(len(br))
        tasks = np.array([s.ep.task for s in br.steps])
        for task in np.unique(tasks):
            idx = np.flatnonzero(tasks == task)
            p[idx] = idx[rng.permutation(len(idx))]
        out[key] = BucketRows(br.steps, [br.stats[i] for i in p], br.rewards,
                              [br.prompts[i] for i in p], br.bucket_prompts, br.x[p])  # fmt: skip
    return out
