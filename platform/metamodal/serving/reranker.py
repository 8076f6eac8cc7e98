"""The reranking side of serving: the retriever's candidates turned into an agent episode (with
only the evidence sources the caller says it has) and ordered by MMA's policy, RuleRouter-Fuse,
or a trained fusion model.

Requests arrive in batches (``@serve.batch`` in the deployment): MMA decodes each distinct prompt
of a batch once, and greedy decoding is cached by prompt — prompts carry only an evidence
profile, so a warm replica rarely decodes at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metamodal.agent.episodes import Episode
from metamodal.serving.config import ServeConfig, adapter_path, mma_seed_result
from metamodal.serving.retriever import Retrieved
from metamodal.train.artifacts import load_run


@dataclass
class Reranked:
    order: np.ndarray  # positions into the pool, best first
    scores: np.ndarray  # the reranker's score per pool position
    used: list[str]  # evidence sources it was allowed to read
    tools: list[str]  # tools it called


class RerankerCore:
    def __init__(self, cfg: ServeConfig) -> None:
        from metamodal.agent.env import AgentEnv
        from metamodal.agent.evidence import EvidenceStore
        from metamodal.agent.tools import tools_for

        self.cfg, self.kind = cfg, cfg.reranker
        run = load_run(cfg.retriever_run)
        net = run.build()
        items = net.vectors()[1].detach().numpy().astype(np.float64)
        self.store = EvidenceStore.build(run.ds, graph_items=items)
        self.sources = self.store.sources()
        self.policy = self.rr = self.scorer = None
        extra = {}
        if self.kind in ("mma", "rulerouter"):
            res = mma_seed_result(cfg.mma_dir, cfg.mma_seed)
            from metamodal.agent.baselines import BaselineScorer
            from metamodal.agent.rulerouter import RuleRouter
            from metamodal.agent.tools import model_tool

            # a served pool is the retriever's top-K: the fusion tool's model and λ chosen on
            # validation fixed pools (runs from before tool_model_fixed: the trained one)
            if tm := res.get("tool_model_fixed", res.get("tool_model")):
                trun = load_run(Path(cfg.mma_dir) / "zoo" / tm, ds=run.ds)
                groups = {n: self.store.group_of(n) for n in trun.modalities}
                extra["fusion"] = model_tool(BaselineScorer(trun, groups))
        self.env = AgentEnv(self.store, tools_for(self.store, extra=extra))
        if self.kind in ("mma", "rulerouter"):
            rr_cfg = res["rulerouter"]
            self.rr = RuleRouter(rr_cfg["weights"], rr_cfg.get("lambda_fixed", rr_cfg["lambda"]))
            self.env.lam = float(res.get("lambda_fixed", res["lambda"]))
            if self.kind == "mma":
                self.policy = load_policy(cfg.mma_dir, cfg.mma_seed, res["policy"])
        elif self.kind == "model":
            from metamodal.agent.baselines import BaselineScorer

            mrun = load_run(cfg.model_run, ds=run.ds)
            self.scorer = BaselineScorer(mrun, {n: self.store.group_of(n) for n in mrun.modalities})
        self.name = f"model:{load_run_name(cfg)}" if self.kind == "model" else self.kind

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
        steps = [self.env.observe(e) for e in eps]
        if self.policy is not None:
            actions = [self.env.parse(s, c)
                       for s, c in zip(steps, self.policy.complete([s.prompt for s in steps]),
                                       strict=True)]  # fmt: skip
            scored = [(self.env.scores(s, a), a.calls) for s, a in zip(steps, actions, strict=True)]
        else:
            scored = [(self.rr.scores(s.ep, s.results, s.first), s.usable) for s in steps]
        return [Reranked(np.argsort(-x, kind="stable"), x, list(s.ep.available), calls)
                for (x, calls), s in zip(scored, steps, strict=True)]  # fmt: skip


def load_run_name(cfg: ServeConfig) -> str:
    import json

    return json.loads((Path(cfg.model_run) / "config.json").read_text())["model"]


def load_policy(mma_dir: str, seed: int, summary: dict):
    from peft import PeftModel

    from metamodal.agent.policy import Policy, load_model, load_tokenizer

    tok = load_tokenizer(summary["base_model"])
    adapter = adapter_path(mma_dir, seed, summary["adapter"])
    net = PeftModel.from_pretrained(load_model(summary["base_model"]), str(adapter))
    return Policy(net, tok)
