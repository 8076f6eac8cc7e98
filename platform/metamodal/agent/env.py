"""The agent's environment: an episode observed through the tools (statuses, scores, the prompt),
an action applied to it (the called tools' scores fused by the shared rule), and its reward.
Tool results are computed once per episode and reused by every completion sampled for it.
"""

from __future__ import annotations

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
