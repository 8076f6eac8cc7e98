"""A trained seed's router as one reranker: the tools (with the chosen zoo models as fusion
tools), the statistics' deciles, the route menus per bucket, RuleRouter-Fuse's route in each,
and the LLM router's adapter — saved once as ``seedN/router.json`` and loaded by whatever
reranks a pool (the Serve Reranker deployment), so what is served is the route choice that was
measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metamodal.agent.env import AgentEnv
from metamodal.agent.episodes import Episode
from metamodal.agent.menus import Menu
from metamodal.agent.routes import Route
from metamodal.agent.stats import StatsCodec, episode_stats

VERSION = 1


def _key(k: tuple[str, tuple[str, ...]]) -> str:
    return f"{k[0]}:{'+'.join(k[1])}"


def save_router(path: Path, tools: list[str], fusion_tools: list[str], codec: StatsCodec,
                menus: dict, policy: dict) -> None:  # fmt: skip
    state = {
        "version": VERSION, "tools": tools, "fusion_tools": fusion_tools,
        "codec": {n: e.tolist() for n, e in codec.edges.items()},
        "menus": {_key(k): {"routes": [[list(map(list, r.weights)), r.lam] for r in m.routes],
                            "rr": m.rr} for k, m in menus.items()},
        "policy": policy,
    }  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


class RoutedReranker:
    """``kind``: ``mma`` (the LLM router's argmax over the bucket's menu) or ``rulerouter``."""

    def __init__(self, state: dict, env: AgentEnv, kind: str, seed_dir: Path) -> None:
        if state.get("version") != VERSION:
            raise ValueError(f"{seed_dir / 'router.json'}: router version {state.get('version')}, "
                             f"expected {VERSION}")  # fmt: skip
        self.env, self.kind = env, kind
        self.codec = StatsCodec(state["tools"])
        self.codec.edges = {n: np.asarray(e) for n, e in state["codec"].items()}
        self.menus = {
            k: Menu([Route(tuple((t, float(w)) for t, w in ws), float(lam)) for ws, lam in m["routes"]],
                    int(m["rr"]))
            for k, m in state["menus"].items()
        }  # fmt: skip
        self.net = None
        if kind == "mma":
            from metamodal.agent.menu_policy import load_menu_policy

            pol = state["policy"]
            adapter = seed_dir / "router_stats" / "adapter"
            self.net = load_menu_policy(pol, adapter if adapter.is_dir() else None)

    def menu(self, ep: Episode) -> Menu:
        key = _key((ep.pool_kind, tuple(ep.available)))
        if key not in self.menus:
            raise KeyError(f"no route menu for {key}: the run never trained that bucket")
        return self.menus[key]

    def rank(self, episodes: list[Episode]) -> list[tuple[np.ndarray, Route]]:
        steps = [self.env.observe(e) for e in episodes]
        menus = [self.menu(e) for e in episodes]
        if self.net is not None:
            prompts = [self.codec.render(episode_stats(self.env.store.view(s.ep), s.results,
                       s.first), s.ep.task, len(s.ep.pool)) for s in steps]  # fmt: skip
            probs = self.net.probs(prompts, [len(m.routes) for m in menus])
            picks = probs.argmax(1).tolist()
        else:
            picks = [m.rr for m in menus]
        out = []
        for s, m, i in zip(steps, menus, picks, strict=True):
            route = m.routes[i]
            out.append((route.scores(s.results, s.first, len(s.ep.pool)), route))
        return out
