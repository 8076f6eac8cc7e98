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

import numpy as np

from metamodal.eval.tables import table
from metamodal.models import ZOO
from metamodal.rundir import ZooRun
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
        "--dgmrec-seeds",
        type=int,
        default=0,
        help="also run DGMRec's missing-modality protocol (2/3 of items lose content, stratified "
        "over warm and 10%% cold items) with this many seeds: mean ± std, paired test",
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
        keep = {"valid", "test", "epochs", "best_epoch", "seconds_per_epoch", "eval_seconds", "wall_seconds"}
        res[m] = {**r.model_dump(include=keep), "config": ZooRun(runs / m).config()}
        rates = [float(x) for x in a.missing_rates.split(",") if x]
        if a.missing_models != "all" and m not in a.missing_models.split(","):
            rates = []
        if rates and r.modalities:
            res[m]["missing"] = {}
            for rate in rates:
                drop = [f"missing.item_rates.{mod}={rate}" for mod in r.modalities]
                mr = run_training(
                    m,
                    a.dataset,
                    runs / f"{m}_missing{rate}",
                    [*a.set, *drop, "missing.cold_item_frac=0.1"],
                    overwrite=True,
                )
                res[m]["missing"][str(rate)] = mr.test
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
                res[m]["missing"][str(rate)] = mr.test
        if res[m].get("missing"):  # relative loss of Recall@20 against the same model's full run
            full = res[m]["test"]["recall@20"]
            res[m]["missing_drop_pct"] = {
                rate: 100.0 * (full - v["recall@20"]) / full if full else None
                for rate, v in res[m]["missing"].items()
            }
        res[m]["modalities"] = r.modalities
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))  # after every model: a long run keeps its rows
    md = table({m: r["test"] for m, r in res.items() if not m.startswith("_")}, COLUMNS, markdown=True)
    extra = "\n\n| model | epochs (best) | s/epoch | eval s |\n|---|---|---|---|\n" + "".join(
        f"| {m} | {r['epochs']} ({r['best_epoch']}) | {r['seconds_per_epoch']:.2f} | {r['eval_seconds']:.2f} |\n"
        for m, r in res.items() if not m.startswith("_")
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
    if a.dgmrec_seeds:
        proto = dgmrec_protocol(a.dataset, models, runs, a.set, a.dgmrec_seeds)
        res["_dgmrec_protocol"] = proto
        out.write_text(json.dumps(res, indent=2))
        extra += "\n\n" + dgmrec_markdown(proto)
    out.with_suffix(".md").write_text(f"# {a.dataset} (test, best valid epoch)\n\n{md}{extra}")
    print(md + extra)


def dgmrec_protocol(dataset: str, models: list[str], runs: Path, sets: list[str], seeds: int) -> dict:
    """Each model under DGMRec's protocol for ``seeds`` seeds (split, masks and training all
    reseeded): test Recall@20 per seed, mean ± std, and a paired t-test over seeds against the
    model with the best mean validation Recall@20 (chosen on validation, not test)."""
    from scipy.stats import ttest_rel

    per: dict[str, dict[str, list[float]]] = {}
    for m in models:
        for s in range(seeds):
            over = [*sets, "missing.protocol=dgmrec", "missing.cold_item_frac=0.1",
                    f"missing.seed={s}", f"split.seed={s}", f"train.seed={s}"]  # fmt: skip
            r = run_training(m, dataset, runs / f"{m}_dgmrec_seed{s}", over, overwrite=True)
            d = per.setdefault(m, {"valid": [], "test": []})
            d["valid"].append(r.valid["recall@20"])
            d["test"].append(r.test["recall@20"])
    best = max(per, key=lambda m: np.mean(per[m]["valid"]))
    out = {"seeds": seeds, "reference": best, "models": {}}
    for m, d in per.items():
        t = np.array(d["test"])
        p = float(ttest_rel(t, per[best]["test"]).pvalue) if m != best and seeds > 1 else None
        out["models"][m] = {"test_recall@20": d["test"], "mean": float(t.mean()), "std": float(t.std()), "p_vs_reference": p}
    return out


def dgmrec_markdown(proto: dict) -> str:
    lines = [f"DGMRec protocol ({proto['seeds']} seeds; reference chosen on validation: {proto['reference']}):", "",
             "| model | test Recall@20 (mean ± std) | paired t-test p vs reference |", "|---|---|---|"]  # fmt: skip
    for m, r in sorted(proto["models"].items(), key=lambda kv: -kv[1]["mean"]):
        p = "-" if r["p_vs_reference"] is None else f"{r['p_vs_reference']:.3g}"
        lines.append(f"| {m} | {r['mean']:.4f} ± {r['std']:.4f} | {p} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
