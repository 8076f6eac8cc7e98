"""A trained seed's router as one reranker: the tools (with the chosen zoo models as fusion
tools), the statistics' deciles, the route menus per bucket, RuleRouter-Fuse's route in each,
and the LLM router's adapter — saved once as ``seedN/router.json``. ``mma run`` evaluates
MMA-Auto and RuleRouter-Fuse through this object, loaded back from that file, and the Serve
Reranker deployment loads the same file: what is served is the route choice that was measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from metamodal.agent.env import AgentEnv, Step
from metamodal.agent.episodes import Episode
from metamodal.agent.menus import Bucket, Menu
from metamodal.agent.routes import Route
from metamodal.agent.stats import StatsCodec, episode_stats
from metamodal.rundir import write_json

if TYPE_CHECKING:
    from metamodal.agent.rows import Rows

VERSION = 1
KINDS = ("mma", "rulerouter")


def bucket_key(k: Bucket) -> str:
    return f"{k[0]}:{'+'.join(k[1])}"


def save_router(path: Path, tools: list[str], fusion_tools: list[str], codec: StatsCodec,
                menus: dict, policy: dict, llm_rank: dict | None = None,
                built: dict | None = None) -> None:  # fmt: skip
    """``llm_rank``: the listwise tool's training summary when the run used it; ``built``: the
    tool factories' records by path (``agent.extensions``: Serve rebuilds their tools)."""
    state = {
        "version": VERSION, "tools": tools, "fusion_tools": fusion_tools,
        "codec": {n: e.tolist() for n, e in codec.edges.items()},
        "menus": {bucket_key(k): {"routes": [[list(map(list, r.weights)), r.lam] for r in m.routes],
                                  "rr": m.rr} for k, m in menus.items()},
        "policy": policy, "llm_rank": llm_rank, "built_tools": built or {},
    }  # fmt: skip
    write_json(path, state)


def read_router(seed_dir: Path) -> dict:
    f = seed_dir / "router.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no trained router (run `metamodal mma run` first)")
    state = json.loads(f.read_text())
    if state.get("version") != VERSION:
        raise ValueError(f"{f}: router version {state.get('version')}, expected {VERSION}")
    return state


class RoutedReranker:
    """``kind``: ``mma`` (the LLM router's argmax over the bucket's menu) or ``rulerouter``
    (RuleRouter-Fuse's route of the bucket). ``env`` must hold the tools named in the state."""

    def __init__(self, state: dict, env: AgentEnv, kind: str, seed_dir: Path, share_trunk: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"reranker kind {kind!r}: expected one of {KINDS}")
        missing = [t for t in state["tools"] if t not in env.tools]
        if missing:
            raise ValueError(f"{seed_dir / 'router.json'}: tools {missing} are not in the env")
        # the statistics name tool pairs in the env's order: the run's order, however the env
        # was assembled (Serve adds the run's extra tools in its own order)
        order = {t: env.tools[t] for t in state["tools"]}
        env = AgentEnv(env.store, {**order, **{t: f for t, f in env.tools.items() if t not in order}})
        self.env, self.kind, self.policy = env, kind, state["policy"]
        self.codec = StatsCodec(state["tools"])
        self.codec.edges = {n: np.asarray(e) for n, e in state["codec"].items()}
        self.menus = {
            k: Menu([Route(tuple((t, float(w)) for t, w in ws), float(lam)) for ws, lam in m["routes"]],
                    int(m["rr"]))
            for k, m in state["menus"].items()
        }  # fmt: skip
        self.net = None
        if kind == "mma":
            from metamodal.agent.menu_net import load_menu_policy

            adapter = seed_dir / "router_stats" / state["policy"].get("adapter_name", "adapter")
            self.net = load_menu_policy(state["policy"], adapter if adapter.is_dir() else None, share_trunk)

    @classmethod
    def load(cls, seed_dir: Path, env: AgentEnv, kind: str, share_trunk: bool = False) -> RoutedReranker:
        """``share_trunk``: see ``load_menu_policy`` (an MMA run's evaluation, not Serve)."""
        return cls(read_router(seed_dir), env, kind, seed_dir, share_trunk)

    def has_menu(self, key: Bucket) -> bool:
        try:
            self.menu(key)
        except KeyError:
            return False
        return True

    def menu(self, key: Bucket) -> Menu:
        """A bucket's menu. Runs train fixed pools with everything observed only: a served
        fixed pool under a partial pattern takes that pattern's (target-positive) menu."""
        k = bucket_key(key)
        if k not in self.menus and key[0] == "fixed":
            k = bucket_key(("target_positive", key[1]))
        if k not in self.menus:
            raise KeyError(f"no route menu for {k}: the run never trained that bucket")
        return self.menus[k]

    def prompt(self, step: Step) -> str:
        st = episode_stats(self.env.store.view(step.ep), step.results, step.first)
        return self.codec.render(st, step.ep.task, len(step.ep.pool))

    def choose(self, key: Bucket, prompts: list[str]) -> np.ndarray:
        """The route index per prompt of one bucket (the prompts ``prompt`` renders)."""
        m = self.menu(key)
        if self.net is None:
            return np.full(len(prompts), m.rr, dtype=np.int64)
        return self.net.probs(prompts, [len(m.routes)] * len(prompts)).argmax(1)

    def rank(self, episodes: list[Episode]) -> list[tuple[np.ndarray, Route]]:
        """Per episode, the chosen route's score per pool position, and the route. Episodes
        are grouped by bucket so the LLM reads each bucket's prompts in one batch."""
        keys = [(e.pool_kind, tuple(e.available)) for e in episodes]
        if self.net is None:
            return [self._rule(e, k) for e, k in zip(episodes, keys, strict=True)]
        steps = [self.env.observe(e) for e in episodes]
        picks = np.zeros(len(steps), dtype=np.int64)
        for key in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            picks[idx] = self.choose(key, [self.prompt(steps[i]) for i in idx])
        out = []
        for s, key, i in zip(steps, keys, picks.tolist(), strict=True):
            route = self.menu(key).routes[i]
            out.append((route.scores(s.results, s.first, len(s.ep.pool)), route))
        return out

    def _rule(self, ep: Episode, key: Bucket) -> tuple[np.ndarray, Route]:
        """RuleRouter-Fuse's route is its bucket's: it reads no statistics, so only the
        route's own tools run (fusion reads nothing else)."""
        m = self.menu(key)
        route = m.routes[m.rr]
        s = self.env.observe(ep, [t for t, _ in route.weights])
        return route.scores(s.results, s.first, len(ep.pool)), route


def fixed_rankings(rows: Rows, routed: RoutedReranker, choice: dict, ds, k: int = 10) -> list:
    """Each fixed pool's top ``k`` catalogue ids under the chosen route: what a served request
    for that user must answer (``seedN/rankings.json``)."""
    out = []
    for key, br in rows.items():
        if key[0] != "fixed":
            continue
        menu = routed.menu(key)
        for s, i in zip(br.steps, choice[key].tolist(), strict=True):
            route = menu.routes[i]
            x = route.scores(s.results, s.first, len(s.ep.pool))
            top = s.ep.pool[np.argsort(-x, kind="stable")[:k]]
            out.append({"user": str(ds.user_ids[s.ep.user]), "route": i,
                        "tools": [t for t, _ in route.weights],
                        "items": [str(ds.item_ids[j]) for j in top]})  # fmt: skip
    return out


def write_rankings(path: Path, rows: dict[str, Rows], routed: dict, choices: dict, ds) -> None:
    state = {kind: {part: fixed_rankings(r, routed[kind], choices[kind][part], ds)
                    for part, r in rows.items()} for kind in routed}  # fmt: skip
    write_json(path, state)
