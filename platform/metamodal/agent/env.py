"""The agent's environment: an episode observed through the tools — each tool's status and
scores, and the first stage where ``graph`` is observed. Tool results are computed once per
episode and shared by every route scored on it (``routes.reward_table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metamodal.agent.episodes import Episode
from metamodal.agent.evidence import EvidenceStore, MaskedModality
from metamodal.agent.tools import Tool, ToolResult, run_tools


@dataclass
class Step:
    ep: Episode
    results: dict[str, ToolResult]
    first: np.ndarray | None  # first-stage scores, None when graph is unobserved

    @property
    def usable(self) -> list[str]:
        return [t for t, r in self.results.items() if r.usable]


class AgentEnv:
    def __init__(self, store: EvidenceStore, tools: dict[str, Tool]) -> None:
        self.store, self.tools = store, tools

    def observe(self, ep: Episode, names: Sequence[str] | None = None) -> Step:
        """Every tool's result, or only ``names``' (a fixed route needs no other tool)."""
        results = run_tools(self.store, self.tools, ep, None if names is None else list(names))
        try:
            first = self.store.view(ep).first_stage()
        except MaskedModality:
            first = None
        return Step(ep, results, first)
