"""Where a served request's time goes, in process (no HTTP, no Serve hops): retrieval, then each
reranker kind on the same requests, one request at a time.

    python benchmarks/rerank_cost.py --mma-dir runs/demo/mma --out benchmarks/results/rerank_cost_cpu.json \
        [--users 200] [--repeats 3]

Rerankers: ``none``, ``rulerouter`` (its route's tools only), ``rulerouter_all_tools`` (every tool
and the statistics, as MMA reads them: what RuleRouter-Fuse cost before it ran its route's tools
only), ``model`` (the run's fusion-tool model) and ``mma`` (the statistics plus one LLM forward).
Writes FILE.json and FILE.md: median and p99 milliseconds per request per stage, in one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def timed(fn, items: list, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        for x in items:
            t0 = time.perf_counter()
            fn(x)
            out.append(1e3 * (time.perf_counter() - t0))
    return out


def main() -> None:
    import torch

    from metamodal.eval.tables import markdown_table
    from metamodal.rundir import write_json
    from metamodal.serving.config import ServeConfig
    from metamodal.serving.reranker import RerankerCore
    from metamodal.serving.retriever import RetrieverCore

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mma-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a replica's share)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    base = ServeConfig(mma_dir=str(a.mma_dir), reranker="none", pool_size=50)
    retriever = RetrieverCore(base)
    users = list(retriever.user_pos)[: a.users]
    got = [retriever.retrieve("user_id", u) for u in users]
    stages = {"retrieve": timed(lambda u: retriever.retrieve("user_id", u), users, a.repeats)}
    fusion = json.loads((Path(a.mma_dir) / "seed0" / "router.json").read_text())["fusion_tools"][0]
    kinds = {"none": {}, "rulerouter": {}, "mma": {},
             "model": {"model_run": str(Path(a.mma_dir) / "zoo" / fusion)}}  # fmt: skip
    for kind, extra in kinds.items():
        core = RerankerCore(ServeConfig(mma_dir=str(a.mma_dir), reranker=kind, pool_size=50, **extra))
        core.warm()
        stages[f"rerank_{kind}"] = timed(lambda r, c=core: c.rerank([(r, None)]), got, a.repeats)
        if kind == "rulerouter":  # the control: every tool and the statistics, the rule's route
            routed = core.routed

            def everything(r, c=core, routed=routed):
                e = c.episode(r, None)
                step = routed.env.observe(e)
                routed.prompt(step)
                m = routed.menu((e.pool_kind, tuple(e.available)))
                return m.routes[m.rr].scores(step.results, step.first, len(e.pool))

            stages["rerank_rulerouter_all_tools"] = timed(everything, got, a.repeats)
    res = {"mma_dir": a.mma_dir, "users": len(users), "repeats": a.repeats, "threads": a.threads,
           "ms": {k: {"median": float(np.median(v)), "p99": float(np.percentile(v, 99)), "n": len(v)}
                  for k, v in stages.items()}}  # fmt: skip
    out = Path(a.out)
    write_json(out, res, indent=2)
    rows = [[k, f"{v['median']:.2f}", f"{v['p99']:.2f}", str(v["n"])] for k, v in res["ms"].items()]
    md = [f"# Per-request cost in process ({a.mma_dir}, {a.threads} torch thread)", "",
          markdown_table(["stage", "median ms", "p99 ms", "requests"], rows), ""]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
