"""Train zoo models with their configured defaults and tabulate valid/test metrics.

    python benchmarks/zoo.py --dataset ../shared/data/amazon-baby --models bpr,lightgcn \
        --out runs/zoo/baby.json [--set train.epochs=50]

Writes FILE.json ``{model: {"valid", "test", "epochs", "best_epoch", "seconds_per_epoch", ...}}``,
FILE.md (the table) and each run's directory under FILE's stem (results, curves, checkpoint).
Selection is on validation (early stopping); test is only reported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from metamodal.eval.report import table
from metamodal.models import ZOO
from metamodal.train.runner import run_training

COLUMNS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--models", default="all", help="comma-separated, or all")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], help="override for every model")
    p.add_argument(
        "--missing-rates",
        default="",
        help="e.g. 0.3,0.6,0.9: retrain content models with each content modality dropped at that "
        "item rate plus 10%% cold items, and report test metrics under it",
    )
    p.add_argument(
        "--missing-models",
        default="all",
        help="comma-separated models that get the --missing-rates runs (default all)",
    )
    a = p.parse_args()
    models = sorted(ZOO) if a.models == "all" else a.models.split(",")
    out = Path(a.out)
    runs = out.with_suffix("")
    res: dict = json.loads(out.read_text()) if out.is_file() else {}
    for m in models:
        r = run_training(m, a.dataset, runs / m, a.set, overwrite=True)
        res[m] = {
            k: r[k]
            for k in (
                "valid",
                "test",
                "epochs",
                "best_epoch",
                "seconds_per_epoch",
                "eval_seconds",
                "wall_seconds",
                "config",
            )
        }
        rates = [float(x) for x in a.missing_rates.split(",") if x]
        if a.missing_models != "all" and m not in a.missing_models.split(","):
            rates = []
        if rates and r["modalities"]:
            res[m]["missing"] = {}
            for rate in rates:
                drop = [f"missing.item_rates.{mod}={rate}" for mod in r["modalities"]]
                mr = run_training(
                    m,
                    a.dataset,
                    runs / f"{m}_missing{rate}",
                    [*a.set, *drop, "missing.cold_item_frac=0.1"],
                    overwrite=True,
                )
                res[m]["missing"][str(rate)] = mr["test"]
        elif rates:  # interactions-only models: the same drop of cold items, content untouched
            res[m]["missing"] = {}
            mr = run_training(
                m,
                a.dataset,
                runs / f"{m}_cold",
                [*a.set, "missing.cold_item_frac=0.1"],
                overwrite=True,
            )
            for rate in rates:
                res[m]["missing"][str(rate)] = mr["test"]
        if res[m].get("missing"):  # relative loss of Recall@20 against the same model's full run
            full = res[m]["test"]["recall@20"]
            res[m]["missing_drop_pct"] = {
                rate: 100.0 * (full - v["recall@20"]) / full if full else None
                for rate, v in res[m]["missing"].items()
            }
        res[m]["modalities"] = r["modalities"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))  # after every model: a long run keeps its rows
    md = table({m: r["test"] for m, r in res.items()}, COLUMNS, markdown=True)
    extra = "\n\n| model | epochs (best) | s/epoch | eval s |\n|---|---|---|---|\n" + "".join(
        f"| {m} | {r['epochs']} ({r['best_epoch']}) | {r['seconds_per_epoch']:.2f} | {r['eval_seconds']:.2f} |\n"
        for m, r in res.items()
    )
    miss_rows = {
        f"{m} @ {rate}": v for m, r in res.items() for rate, v in r.get("missing", {}).items()
    }
    if miss_rows:
        extra += "\n\nUnder missing modalities (+10% cold items), test:\n\n" + table(
            miss_rows, COLUMNS, markdown=True
        )
        drops = {m: r["missing_drop_pct"] for m, r in res.items() if r.get("missing_drop_pct")}
        rates = sorted({k for d in drops.values() for k in d}, key=float)
        extra += "\n\nRecall@20 lost against the full-modality run (%, lower is better):\n\n"
        extra += "| model | " + " | ".join(rates) + " |\n|---|" + "---|" * len(rates) + "\n"
        extra += "".join(
            f"| {m} | " + " | ".join(f"{d[k]:.1f}" for k in rates) + " |\n"
            for m, d in sorted(drops.items(), key=lambda kv: kv[1][rates[-1]])
        )
    out.with_suffix(".md").write_text(f"# {a.dataset} (test, best valid epoch)\n\n{md}{extra}")
    print(md + extra)


if __name__ == "__main__":
    main()
