"""Split a dataset, draw its missingness masks, and evaluate the reference baselines.

Writes ``split/`` (split.npz, split.json, missing.npz, missing.json), ``results.json``,
``results.md`` and ``results.png`` under ``out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metamodal.data import Dataset  # noqa: E402
from metamodal.data.missing import MissingSpec, make_missingness  # noqa: E402
from metamodal.data.splits import make_split  # noqa: E402
from metamodal.eval.metrics import DEFAULT_KS  # noqa: E402
from metamodal.eval.protocol import evaluate_split  # noqa: E402
from metamodal.eval.tables import table  # noqa: E402
from metamodal.models import REGISTRY  # noqa: E402
from metamodal.rundir import write_json
from metamodal.rundir.html import write_html

COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20", "map@20", "hit@20")


def plot(results: dict[str, dict], path: Path, ks: tuple[int, ...] = DEFAULT_KS) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("recall", "ndcg"), strict=True):
        for name, res in results.items():
            ax.plot(ks, [res["test"][f"{metric}@{k}"] for k in ks], marker="o", label=name)
        ax.set_xlabel("K")
        ax.set_title(f"{metric.upper()}@K (test, full ranking)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_baselines(
    ds: Dataset,
    out: str | Path,
    *,
    method: str | None = None,
    seed: int = 0,
    missing: MissingSpec | None = None,
    models: tuple[str, ...] = ("popularity", "random"),
    verbose: bool = True,
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    split = make_split(ds, method, seed)
    split.save(out / "split")
    miss = make_missingness(ds, split, missing or MissingSpec(seed=seed))
    miss.save(out / "split")
    train = ds.matrix(miss.train_indices(ds, split))
    results = {name: _evaluate(name, train, ds, split, miss, verbose) for name in models}
    summary = {
        "dataset": ds.summary(),
        "split": split.summary(),
        "missing": miss.summary(),
        "models": results,
    }
    write_json(out / "results.json", summary, indent=2, default=float)
    md = _markdown(ds.name, split, results)
    (out / "results.md").write_text("\n".join(md) + "\n")
    plot(results, out / "results.png")
    write_html(out / "results.md", config={"missing": summary["missing"], "split": summary["split"]})
    return summary


def _evaluate(name: str, train, ds: Dataset, split, miss, verbose: bool) -> dict:
    t0 = time.perf_counter()
    model = REGISTRY[name]().fit(train)
    valid = evaluate_split(model.full_scores, ds, split, "valid", miss, slices=False)
    test = evaluate_split(model.full_scores, ds, split, "test", miss)
    if verbose:
        print(f"  evaluated {name}: test recall@20 {test.metrics['recall@20']:.4f} "
              f"({test.seconds['total']:.2f} s, {len(test.users):,} users)", flush=True)  # fmt: skip
    return {
        "valid": valid.metrics,
        "test": test.metrics,
        "slices": test.slices,
        "slice_users": test.slice_users,
        "eval_seconds": test.seconds["total"],
        "seconds": time.perf_counter() - t0,
    }


def _markdown(name: str, split, results: dict) -> list[str]:
    md = [f"# Baselines on {name}", "", f"split: {json.dumps(split.summary())}", "",
          table({k: v["test"] for k, v in results.items()}, COLUMNS, markdown=True), ""]  # fmt: skip
    slice_rows = {
        f"{m} / {s}": {**vals, "users": results[m]["slice_users"][s]}
        for m in results
        for s, vals in results[m]["slices"].items()
    }
    if slice_rows:
        md += ["## Slices (test)", "",
               table(slice_rows, ("users", "recall@20", "ndcg@20"), "model / slice", markdown=True)]  # fmt: skip
    return md
