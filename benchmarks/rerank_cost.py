"""Where a served request's time goes, in process (no HTTP, no Serve hops): retrieval, then each
reranker kind on the same requests, one request at a time — for one or more MMA runs (e.g. the
same run's router on the whole LM and on its bottom layers, ``policy.depth``) and torch thread
counts, all in one run so the figures compare.

    python benchmarks/rerank_cost.py --mma-dir runs/demo/mma [--mma-dir runs/demo_d8/mma] \
        --out benchmarks/results/rerank_cost_cpu.json [--threads 1,2] [--users 200] [--repeats 3]

Rerankers: ``none``, ``rulerouter`` (its route's tools only), ``rulerouter_all_tools`` (every tool
and the statistics, as MMA reads them: what RuleRouter-Fuse cost before it ran its route's tools
only), ``model`` (the run's fusion-tool model) and ``mma`` (the statistics plus one LLM forward;
its depth is the run's; each request's prompt read afresh). Writes FILE.json and FILE.md: median and p99 milliseconds per request.
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


def fresh(core):
    """The reranker with its router's read-outs forgotten: every timed request pays its forward
    pass (a repeated prompt is otherwise a lookup)."""
    if core.routed is not None and core.routed.net is not None:
        core.routed.net.forget_read_outs()
    return core


def router_depth(mma_dir: str) -> str:
    from metamodal.agent.menu_net import layers_read

    return layers_read(json.loads((Path(mma_dir) / "seed0" / "result.json").read_text())["policy"])


def stages_of(mma_dir: str, users: int, repeats: int, light: bool) -> dict[str, list[float]]:
    """Every stage's per-request milliseconds for one run; ``light``: the cheap rerankers too
    (they do not depend on the router's depth or the thread count that much)."""
    from metamodal.serving.config import ServeConfig
    from metamodal.serving.reranker import RerankerCore
    from metamodal.serving.retriever import RetrieverCore

    retriever = RetrieverCore(ServeConfig(mma_dir=mma_dir, reranker="none", pool_size=50))
    ids = list(retriever.user_pos)[:users]
    got = [retriever.retrieve("user_id", u) for u in ids]
    fusion = json.loads((Path(mma_dir) / "seed0" / "router.json").read_text())["fusion_tools"][0]
    kinds = {"mma": {}}
    if light:
        kinds = {"none": {}, "rulerouter": {}, "model": {"model_run": str(Path(mma_dir) / "zoo" / fusion)}, **kinds}
    out = {"retrieve": timed(lambda u: retriever.retrieve("user_id", u), ids, repeats)} if light else {}
    for kind, extra in kinds.items():
        core = RerankerCore(ServeConfig(mma_dir=mma_dir, reranker=kind, pool_size=50, **extra))
        core.warm()
        out[f"rerank_{kind}"] = timed(lambda r, c=core: fresh(c).rerank([(r, None)]), got, repeats)
        if kind == "rulerouter":  # the control: every tool and the statistics, the rule's route
            routed = core.routed

            def everything(r, c=core, routed=routed):
                e = c.episode(r, None)
                step = routed.env.observe(e)
                routed.prompt(step)
                m = routed.menu((e.pool_kind, tuple(e.available)))
                return m.routes[m.rr].scores(step.results, step.first, len(e.pool))

            out["rerank_rulerouter_all_tools"] = timed(everything, got, repeats)
    return out


def main() -> None:
    import torch

    from metamodal.eval.tables import markdown_table
    from metamodal.rundir import write_json

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mma-dir", action="append", required=True, help="repeat for several runs")
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="1", help="torch thread counts, comma-separated (a replica's share)")
    a = p.parse_args()
    rows, res = [], {"users": a.users, "repeats": a.repeats, "runs": []}
    for i, mma_dir in enumerate(a.mma_dir):
        depth = router_depth(mma_dir)
        for j, threads in enumerate(int(t) for t in a.threads.split(",")):
            torch.set_num_threads(threads)
            ms = stages_of(mma_dir, a.users, a.repeats, light=i == 0 and j == 0)
            stats = {k: {"median": float(np.median(v)), "p99": float(np.percentile(v, 99)), "n": len(v)}
                     for k, v in ms.items()}  # fmt: skip
            res["runs"].append({"mma_dir": mma_dir, "router_depth": depth, "threads": threads, "ms": stats})
            rows += [[k, mma_dir, depth, str(threads), f"{v['median']:.2f}", f"{v['p99']:.2f}", str(v["n"])]
                     for k, v in stats.items()]  # fmt: skip
            print(f"{mma_dir} (router depth {depth}, {threads} threads): "
                  f"mma median {stats['rerank_mma']['median']:.1f} ms", flush=True)  # fmt: skip
    out = Path(a.out)
    write_json(out, res, indent=2)
    md = ["# Per-request cost in process, one request at a time", "",
          markdown_table(["stage", "run", "router depth", "torch threads", "median ms", "p99 ms", "requests"], rows),
          ""]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
