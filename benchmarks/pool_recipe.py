"""How hard a target-positive pool may be before it turns the surviving evidence against itself.

A pool's hard negatives are drawn from the nearest neighbours of the history in each observed
source. The very nearest are exactly what that source's own tool ranks first, so a pool made of
them puts every hard negative above the target whenever the target is not among the source's
top few — and ranking by the only evidence left then scores below a random order. This script
measures, for a grid of recipes (``hard_share`` of the negatives drawn from each source's
``hard_depth`` nearest items), every usable tool's NDCG@10 on single-source episodes of one
seed's *fit* users (validation; never test), per source and task, and applies one rule across
all the runs given:

    an informative cell is a (source, task) whose best tool beats a random order by ≥ 0.05 on
    uniform pools; a recipe is admissible when every informative cell keeps at least half of
    that lift; the chosen recipe is the admissible one with the lowest mean best-tool NDCG
    (the hardest) over all cells and runs.

    python benchmarks/pool_recipe.py --run runs/mma/ml100k --run runs/mma/lfm2k \
        --out benchmarks/results/pool_recipe_cpu.json [--episodes 1500]

Reads each run's zoo (its retriever) and configuration; writes FILE.json and FILE.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARES = (0.1, 0.25, 0.5)
DEPTHS = (1, 50, 200, 400, 800)
MIN_LIFT, KEEP = 0.05, 0.5


def recipes() -> dict[str, dict]:
    grid = {"uniform": {"hard_share": 0.0, "popular_share": 0.0}, "popular_only": {"hard_share": 0.0}}
    grid |= {f"share{s}_depth{d}": {"hard_share": s, "hard_depth": d} for s in SHARES for d in DEPTHS}
    return grid


def random_ndcg(pool_size: int, k: int = 10) -> float:
    """A random order's expected NDCG@k with one target: each rank equally likely."""
    return sum(1 / np.log2(r + 1) for r in range(1, min(k, pool_size) + 1)) / pool_size


def best_tools(run_dir: Path, recipes_: dict[str, dict], episodes: int) -> dict:
    """{recipe: {source: {task: {tool: mean NDCG@10}}}} on one run's seed-0 fit users."""
    from metamodal.agent.config import MMAConfig
    from metamodal.agent.env import AgentEnv
    from metamodal.agent.episode_sets import base_episodes, split_users
    from metamodal.agent.episodes import EpisodeBuilder, pool_ndcg
    from metamodal.agent.evidence import EvidenceStore
    from metamodal.agent.run import FirstStageScores
    from metamodal.agent.tools import tools_for
    from metamodal.train.artifacts import load_run

    cfg = MMAConfig.model_validate(json.loads((run_dir / "config.json").read_text()))
    run = load_run(run_dir / "zoo" / cfg.retriever)
    ret = FirstStageScores(run)
    store = EvidenceStore.build(run.ds, graph_items=ret.items, heads=cfg.heads)
    env, sources = AgentEnv(store, tools_for(store)), store.sources()
    fit_users, _ = split_users(run.ds.interactions.user[run.split.valid], 0)
    out = {}
    for name, kw in recipes_.items():
        t0 = time.perf_counter()
        b = EpisodeBuilder(run.ds, run.split, ret.user_scores, ret.history_scores, run.miss,
                           cfg.pool.model_copy(update=kw), content_scores=store.catalogue_scores)  # fmt: skip
        base = base_episodes(b, "valid", fit_users, episodes, tuple(sources), 0)
        per: dict = {}
        for src in sources:
            for e in base:
                step = env.observe(b.under(e, (src,)))
                cell = per.setdefault(src, {}).setdefault(e.task, {})
                for tool, r in step.results.items():
                    if r.usable:
                        s = np.nan_to_num(np.asarray(r.scores, float), nan=-np.inf)
                        cell.setdefault(tool, []).append(pool_ndcg(s, step.ep))
        out[name] = {s: {t: {k: float(np.mean(v)) for k, v in c.items()} for t, c in tt.items()}
                     for s, tt in per.items()}  # fmt: skip
        print(f"{run_dir.name}: {name} ({len(base)} episodes a source, {time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def cell_bests(tab: dict) -> dict[tuple[str, str], float | None]:
    """Each (source, task)'s best tool NDCG@10; None where no tool can score (only graph, a cold
    target)."""
    return {(s, t): max(c.values()) if c else None for s, tasks in tab.items() for t, c in tasks.items()}


def choose(tables: dict[str, dict], rand: dict[str, float]) -> dict:
    """The rule in the module docstring, over every run at once."""
    rows = {}
    for name in recipes():
        kept, cells = [], []
        for run, tab in tables.items():
            uniform = cell_bests(tab["uniform"])
            for cell, best in cell_bests(tab[name]).items():
                if best is None:
                    continue
                cells.append(best)
                lift = uniform[cell] - rand[run]
                if lift >= MIN_LIFT:
                    kept.append((best - rand[run]) / lift)
        rows[name] = {"mean_best": float(np.mean(cells)), "worst_kept_lift": float(min(kept))}
    ok = [n for n, r in rows.items() if r["worst_kept_lift"] >= KEEP]
    return {"rows": rows, "chosen": min(ok, key=lambda n: rows[n]["mean_best"])}


def write_md(path: Path, res: dict) -> None:
    runs = list(res["tables"])
    lines = ["# Target-positive pool recipes: hardness against the surviving evidence", "",
             "| recipe | " + " | ".join(f"{r}: mean best tool" for r in runs) + " | worst kept lift | admissible |",
             "|---|" + "---|" * (len(runs) + 2)]  # fmt: skip
    for name, row in res["choice"]["rows"].items():
        means = [np.mean([b for b in cell_bests(res["tables"][r][name]).values() if b is not None]) for r in runs]
        mark = "**chosen**" if name == res["choice"]["chosen"] else ("yes" if row["worst_kept_lift"] >= KEEP else "no")
        lines.append(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {row['worst_kept_lift']:+.2f} | {mark} |")
    lines += ["", "A cell with no usable tool (only graph with a cold target) is left out of both columns.",
              "Random order's expected NDCG@10: " + ", ".join(f"{r} {v:.4f}" for r, v in res["random"].items()), ""]
    for r in runs:
        lines += [f"## {r}: best tool's NDCG@10 per source and task", "",
                  "| recipe | " + " | ".join(f"{s}/{t}" for s, tt in res["tables"][r]["uniform"].items() for t in tt) + " |",
                  "|---|" + "---|" * sum(len(tt) for tt in res["tables"][r]["uniform"].values())]  # fmt: skip
        for name, tab in res["tables"][r].items():
            lines.append(f"| {name} | " + " | ".join("-" if b is None else f"{b:.3f}" for b in cell_bests(tab).values()) + " |")
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="an `mma run` directory with its zoo")
    ap.add_argument("--out", required=True)
    ap.add_argument("--episodes", type=int, default=1500, help="fit episodes per task (at most)")
    a = ap.parse_args()
    from metamodal.agent.config import MMAConfig

    tables, rand = {}, {}
    for r in map(Path, a.run):
        cfg = MMAConfig.model_validate(json.loads((r / "config.json").read_text()))
        tables[r.name] = best_tools(r, recipes(), a.episodes)
        rand[r.name] = random_ndcg(cfg.pool.pool_size)
    res = {"tables": tables, "random": rand, "choice": choose(tables, rand),
           "rule": {"min_lift": MIN_LIFT, "keep": KEEP}, "episodes_per_task": a.episodes}  # fmt: skip
    out = Path(a.out)
    out.write_text(json.dumps(res, indent=1))
    write_md(out.with_suffix(".md"), res)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
