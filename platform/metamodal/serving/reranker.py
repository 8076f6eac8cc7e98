"""The reranking side of serving: the retriever's candidates turned into an agent episode (with
only the evidence sources the caller says it has) and ordered by MMA's policy, RuleRouter-Fuse,
or a trained fusion model.

Requests arrive in batches (``@serve.batch`` in the deployment): MMA's router reads a whole
batch's prompts in one forward pass. MMA and RuleRouter-Fuse come from the run's
``seedN/router.json`` (``metamodal.agent.routed``), the same router ``mma run`` evaluated.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from metamodal.agent.episodes import Episode
from metamodal.rundir import MMARun, ZooRun
from metamodal.serving.config import ServeConfig
from metamodal.serving.retriever import Retrieved
from metamodal.storage import sync_down
from metamodal.train.artifacts import load_run


@dataclass
class Reranked:
    order: np.ndarray  # positions into the pool, best first
    scores: np.ndarray  # the reranker's score per pool position
    used: list[str]  # evidence sources it was allowed to read
    tools: list[str]  # tools it called
    fallback: str | None = None  # why the retriever's order was kept (a bucket the run never trained)


class RerankerCore:
    def __init__(self, cfg: ServeConfig) -> None:
        from metamodal.agent.evidence import EvidenceStore

        self.cfg, self.kind = cfg, cfg.reranker
        run = load_run(cfg.retriever_run)
        net = run.build()
        items = net.vectors()[1].detach().numpy().astype(np.float64)
        # only the routed rerankers call tools (cross_modal reads the heads' space)
        heads = cfg.heads if self.kind in ("mma", "rulerouter") else None
        self.store = EvidenceStore.build(run.ds, graph_items=items, heads=heads)
        self.sources = self.store.sources()
        self.routed = self.scorer = None
        if self.kind in ("mma", "rulerouter"):
            self.routed = load_routed(cfg, run, self.store, self.kind)
        elif self.kind == "model":
            from metamodal.train.masked_scores import MaskedRunScorer

            mrun = load_run(cfg.model_run, ds=run.ds)
            self.scorer = MaskedRunScorer(mrun, {n: self.store.group_of(n) for n in mrun.modalities})
        self.name = reranker_name(cfg)
        self.n_items = int(run.ds.n_items)
        self._lock = threading.Lock()

    def warm(self) -> None:
        """One rerank at replica start (the policy's weights paged in, its first forward pass
        run), so the first request does not stall."""
        n = max(1, min(self.cfg.pool_size, self.n_items - 1))
        r = Retrieved(-1, np.array([0]), np.arange(1, n + 1), np.zeros(n), np.zeros(n, bool),
                      "cold_user", [])  # fmt: skip
        self.rerank([(r, None)])

    def available(self, modalities: list[str] | None) -> tuple[str, ...]:
        return tuple(s for s in self.sources if modalities is None or s in modalities)

    def episode(self, r: Retrieved, modalities: list[str] | None) -> Episode:
        return Episode(
            user=r.user,
            history=r.history,
            pool=r.pool,
            targets=np.array([], np.int64),
            first_stage=r.scores,
            cold=r.cold,
            available=self.available(modalities),
            task=r.task,
            pool_kind="fixed",
        )

    def rerank(self, batch: list[tuple[Retrieved, list[str] | None]]) -> list[Reranked]:
        """Thread-safe: Serve may run this from several threads, and tokenizers and torch
        modules must not be shared across them."""
        with self._lock:
            return self._rerank(batch)

    def _rerank(self, batch: list[tuple[Retrieved, list[str] | None]]) -> list[Reranked]:
        eps = [self.episode(r, m) for r, m in batch]
        if self.kind == "none":
            return [Reranked(np.arange(len(e.pool)), e.first_stage, list(e.available), [])
                    for e in eps]  # fmt: skip
        if self.scorer is not None:
            out = []
            for e in eps:
                s = self.scorer.scores(e)
                out.append(Reranked(np.argsort(-s, kind="stable"), s, list(e.available), []))
            return out
        known = [self.routed.has_menu((e.pool_kind, tuple(e.available))) for e in eps]
        ranked = iter(self.routed.rank([e for e, k in zip(eps, known, strict=True) if k]))
        out = []
        for e, k in zip(eps, known, strict=True):
            if not k:  # an observed pattern the run never trained: the retriever's order, said
                out.append(Reranked(np.arange(len(e.pool)), e.first_stage, list(e.available), [],
                                    "untrained_pattern"))  # fmt: skip
                continue
            x, route = next(ranked)
            out.append(Reranked(np.argsort(-x, kind="stable"), x, list(e.available), [t for t, _ in route.weights]))
        return out


def load_routed(cfg: ServeConfig, run, store, kind: str):
    """The seed's router exactly as ``mma run`` measured it (``seedN/router.json``), with the
    zoo models it routes to as fusion tools."""
    from metamodal.agent.env import AgentEnv
    from metamodal.agent.routed import RoutedReranker, read_router
    from metamodal.agent.tools import model_tool, tools_for
    from metamodal.train.masked_scores import MaskedRunScorer

    mma = MMARun(cfg.mma_dir)
    sync_down(mma.path)
    mma.check()
    seed_dir = mma.seed_dir(cfg.mma_seed)
    state, extra = read_router(seed_dir), {}
    for m in state["fusion_tools"]:
        trun = load_run(mma.zoo(m).path, ds=run.ds)
        extra[m] = model_tool(MaskedRunScorer(trun, {n: store.group_of(n) for n in trun.modalities}), m)
    if state.get("llm_rank"):
        from metamodal.agent.llm_rank import NAME, LLMRanker, llm_rank_tool

        extra[NAME] = llm_rank_tool(LLMRanker(state["llm_rank"]))
    if state.get("built_tools"):  # the factories' tools, loaded from what the run trained
        from metamodal.agent.extensions import ToolContext, build_tools, slug

        built, _ = build_tools(list(state["built_tools"]), lambda path: ToolContext(
            store, run, None, seed_dir / "tools" / slug(path), None))  # fmt: skip
        extra.update(built)
    return RoutedReranker.load(seed_dir, AgentEnv(store, tools_for(store, extra=extra)), kind)


def runs_apart(cfg: ServeConfig) -> bool:
    """Whether the reranker gets its own deployment: only when it runs an LLM (MMA's router, or
    a router that may route to the listwise ``llm_rank`` tool or a factory's tool).
    RuleRouter-Fuse, a fusion model and ``none`` cost about a millisecond in process, less than
    the handle hop that would carry them, so they run inside the ingress."""
    if cfg.reranker == "mma":
        return True
    if cfg.reranker != "rulerouter":
        return False
    from metamodal.agent.routed import read_router

    mma = MMARun(cfg.mma_dir)
    sync_down(mma.path)
    state = read_router(mma.seed_dir(cfg.mma_seed))
    return bool(state.get("llm_rank") or state.get("built_tools"))


def reranker_name(cfg: ServeConfig) -> str:
    """What orders the list, as responses name it (read from disk: cheap, no model loaded)."""
    if cfg.reranker != "model":
        return cfg.reranker
    return "model:" + ZooRun(cfg.model_run).config()["model"]
