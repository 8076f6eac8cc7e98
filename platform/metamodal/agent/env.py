"""The agent's environment: an episode observed through the tools (statuses, scores, the prompt),
an action applied to it (the called tools' scores fused by the shared rule), and its reward.
Tool results are computed once per episode and reused by every completion sampled for it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from metamodal.agent.actions import Action, RewardConfig, parse, render_prompt, reward
from metamodal.agent.episodes import Episode, pool_ndcg
from metamodal.agent.evidence import EvidenceStore, MaskedModality
from metamodal.agent.fusion import fuse
from metamodal.agent.tools import Tool, ToolResult, run_tools


@dataclass
class Step:
    ep: Episode
    results: dict[str, ToolResult]
    first: np.ndarray | None  # first-stage scores, None when graph is unobserved
    prompt: str

    @property
    def usable(self) -> list[str]:
        return [t for t, r in self.results.items() if r.usable]


class AgentEnv:
    def __init__(
        self,
        store: EvidenceStore,
        tools: dict[str, Tool],
        lam: float = 0.5,
        reward_cfg: RewardConfig | None = None,
        max_calls: int = 4,
    ) -> None:
        self.store, self.tools, self.lam = store, tools, lam
        self.reward_cfg, self.max_calls = reward_cfg or RewardConfig(), max_calls

    def observe(self, ep: Episode) -> Step:
        results = run_tools(self.store, self.tools, ep)
        try:
            first = self.store.view(ep).first_stage()
        except MaskedModality:
            first = None
        return Step(ep, results, first, render_prompt(ep, results))

    def parse(self, step: Step, completion: str) -> Action:
        return parse(completion, list(self.tools), step.usable, self.max_calls)

    def scores(self, step: Step, action: Action, lam: float | None = None) -> np.ndarray:
        w = {t: action.weights.get(t, 0.0) for t in action.calls}
        lam = self.lam if lam is None else lam
        return fuse(step.results, w, step.first, lam, len(step.ep.pool))

    def ndcg(self, step: Step, action: Action, lam: float | None = None, k: int = 10) -> float:
        return pool_ndcg(self.scores(step, action, lam), step.ep, k)

    def reward(self, step: Step, completion: str) -> tuple[float, float, Action]:
        """(reward, NDCG@10, parsed action) of one completion."""
        a = self.parse(step, completion)
        n = self.ndcg(step, a)
        return reward(n, a, self.reward_cfg), n, a


WEIGHT_LEVELS = (1.0, 2.0, 4.0)


def candidate_actions(usable: list[str], max_calls: int) -> list[Action]:
    """Every non-empty subset of the usable tools (up to ``max_calls``) with weights from
    ``WEIGHT_LEVELS`` (equal weights once: they are scale-free), calls ordered by weight."""
    out = []
    for r in range(1, min(len(usable), max_calls) + 1):
        for subset in itertools.combinations(usable, r):
            levels = [(1.0,) * r] if r == 1 else itertools.product(WEIGHT_LEVELS, repeat=r)
            for lv in levels:
                if r > 1 and min(lv) != 1.0:
                    continue  # one representative per ratio
                total = sum(lv)
                w = {t: round(x / total, 2) for t, x in zip(subset, lv, strict=True)}
                calls = sorted(subset, key=lambda t: -w[t])
                out.append(Action(calls=calls, weights=w))
    return out


def prior_action(usable: list[str], weights: dict[str, float]) -> Action | None:
    """A fixed router's action restricted to the usable tools (weights renormalised)."""
    w = {t: weights.get(t, 1.0) for t in usable if weights.get(t, 1.0) > 0}
    if not w:
        return None
    total = sum(w.values())
    w = {t: round(x / total, 2) for t, x in w.items()}
    return Action(calls=sorted(w, key=lambda t: -w[t]), weights=w)


def best_action(
    env: AgentEnv, steps: list[Step], prior: dict[str, float] | None = None
) -> tuple[Action, float]:
    """The action with the highest mean reward over ``steps`` (which share their usable tools):
    the behaviour-cloning target for them.

    With ``prior`` (RuleRouter-Fuse's validated weights) the search is guarded against its own
    winner's curse: the best of ~1,000 actions on a handful of episodes mostly fits noise. The
    action is chosen on half the episodes and kept only if it also beats the prior on the other
    half; otherwise the prior's action is the target."""
    usable = steps[0].usable
    if not usable:
        return Action(calls=list(env.tools)[:1], weights={list(env.tools)[0]: 1.0}), 0.0

    def mean_r(a: Action, group: list[Step]) -> float:
        return float(np.mean([reward(env.ndcg(s, a), a, env.reward_cfg) for s in group]))

    def search(group: list[Step]) -> Action:
        best, best_r = None, -np.inf
        for a in candidate_actions(usable, env.max_calls):
            r = mean_r(a, group)
            if r > best_r + 1e-12:
                best, best_r = a, r
        assert best is not None
        return best

    base = prior_action(usable, prior) if prior is not None else None
    if base is None or len(steps) < 2:
        a = search(steps)
        return a, mean_r(a, steps)
    fit, check = steps[::2], steps[1::2]
    cand = search(fit)
    a = cand if mean_r(cand, check) > mean_r(base, check) + 1e-12 else base
    return a, mean_r(a, steps)
