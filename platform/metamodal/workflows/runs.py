"""Evaluate finished training runs (``jobs/evaluate.py``): full-ranking metrics on valid and test
(MMRec protocol, under each run's own missingness), then the same test ranking with content
groups masked at serving time — every item loses the masked groups, the model is rebuilt on
what is left and loads its trained weights — as a table, JSON and a bar plot.

Conditions: ``all`` (what the run trained with), ``graph only`` (every content group masked) and
``graph+G`` for each content group G. The interaction graph stays observed: a full-catalogue
ranking of a user needs the user's history. The agent's episode-level checks, where the graph
can go too, are ``metamodal mma run``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metamodal.data.missing import GRAPH
from metamodal.eval.protocol import evaluate_split
from metamodal.eval.tables import markdown_table
from metamodal.rundir import write_json
from metamodal.rundir.html import write_html
from metamodal.train.artifacts import load_run

METRICS = ("recall@20", "ndcg@20")


def conditions(groups: list[str]) -> dict[str, tuple[str, ...]]:
    out = {"all": (GRAPH, *groups)}
    if groups:
        out["graph only"] = (GRAPH,)
        if len(groups) > 1:
            out.update({f"graph+{g}": (GRAPH, g) for g in groups})
    return out


def evaluate_run(run_dir: str | Path) -> dict:
    from metamodal.train.masked_scores import MaskedRunScorer

    run = load_run(run_dir)
    group_of = {n: run.ds.modalities[n].kind for n in run.modalities}
    groups = list(dict.fromkeys(group_of.values()))
    scorer = MaskedRunScorer(run, group_of)
    res: dict = {"model": run.model, "run": str(run_dir), "conditions": {}}
    for name, pattern in conditions(groups).items():
        u, i = scorer.vectors(pattern)
        ut, it = torch.from_numpy(u).float(), torch.from_numpy(i).float()

        def score(users: torch.Tensor, ut=ut, it=it) -> torch.Tensor:
            return ut[users] @ it.T

        parts = ("valid", "test") if name == "all" else ("test",)
        res["conditions"][name] = {
            p: evaluate_split(score, run.ds, run.split, p, run.miss, slices=False).metrics
            for p in parts
        }
    full = res["conditions"]["all"]["test"]["recall@20"]
    res["drop_pct"] = {c: 100 * (1 - v["test"]["recall@20"] / full) if full else None
                       for c, v in res["conditions"].items() if c != "all"}  # fmt: skip
    return res


def evaluate_runs(run_dirs: list[str | Path], out: str | Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for d in run_dirs:
        r = evaluate_run(d)
        results[f"{r['model']} ({Path(d).name})" if r["model"] in results else r["model"]] = r
        print(f"[evaluate] {r['model']}: " + ", ".join(
            f"{c} R@20 {v['test']['recall@20']:.4f}" for c, v in r["conditions"].items()),
            flush=True)  # fmt: skip
    write_json(out / "evaluation.json", results, indent=2)
    md = markdown(results)
    (out / "evaluation.md").write_text(md + "\n")
    plot(results, out / "evaluation.png")
    write_html(out / "evaluation.md", config={"runs": [str(d) for d in run_dirs]})
    print(md, flush=True)
    return results


def markdown(results: dict) -> str:
    conds = list(dict.fromkeys(c for r in results.values() for c in r["conditions"]))
    head = ["model", "valid R@20", *(f"test R@20 {c}" for c in conds), "test N@20 all"]
    rows = []
    for m, r in results.items():
        c = r["conditions"]
        cells = [m, f"{c['all']['valid']['recall@20']:.4f}"]
        cells += [f"{c[k]['test']['recall@20']:.4f}" if k in c else "" for k in conds]
        cells.append(f"{c['all']['test']['ndcg@20']:.4f}")
        rows.append(cells)
    return markdown_table(head, rows)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(dict.fromkeys(c for r in results.values() for c in r["conditions"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(results) * len(conds) / 2), 4))
    w = 0.8 / max(1, len(conds))
    for j, c in enumerate(conds):
        vals = [r["conditions"].get(c, {}).get("test", {}).get("recall@20", np.nan)
                for r in results.values()]  # fmt: skip
        ax.bar(np.arange(len(results)) + j * w, vals, w, label=c)
    ax.set_xticks(np.arange(len(results)) + w * (len(conds) - 1) / 2, list(results), rotation=20)
    ax.set(ylabel="test Recall@20", title="full ranking with content masked at serving time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
