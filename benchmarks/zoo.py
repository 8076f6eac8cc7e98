"""Train zoo models with their configured defaults (the dataset's tuned layer included) and
tabulate valid/test metrics over seeds.

    python benchmarks/zoo.py --dataset ../shared/data/ml100k-mm --set data.features=runs/ml100k-effnet \
        --models all --seeds 3 --dgmrec-seeds 3 --out benchmarks/results/zoo_ml100k_cpu.json

Each seed reseeds the split, the missingness masks and training. FILE.json holds every run's
record (``runs``: full-modality, per-rate and DGMRec-protocol runs, keyed by model, setting and
seed) and the comparisons; FILE.md the tables (mean ± std over seeds). Selection is on
validation (early stopping; the reference model and the best ID-only and multimodal models are
chosen by mean validation Recall@20); test is only reported. A run already in FILE.json is kept,
so a cut-off benchmark resumes at the next run; each run's directory sits under FILE's stem.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metamodal.eval.tables import markdown_table
from metamodal.models import ZOO
from metamodal.rundir import ZooRun, write_json
from metamodal.train.runner import run_training

COLUMNS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]
ID_ONLY = ("bpr", "lightgcn")
KEEP = ("valid", "test", "epochs", "best_epoch", "seconds_per_epoch", "eval_seconds", "wall_seconds", "modalities")


def seed_overrides(seed: int) -> list[str]:
    return [f"split.seed={seed}", f"missing.seed={seed}", f"train.seed={seed}"]


class Bench:
    """The runs of one benchmark, recorded in FILE.json as they finish."""

    def __init__(self, dataset: str, out: Path, sets: list[str]) -> None:
        self.dataset, self.out, self.sets = dataset, out, sets
        self.res: dict = json.loads(out.read_text()) if out.is_file() else {}
        self.res.setdefault("runs", {})

    @staticmethod
    def key(model: str, setting: str, seed: int) -> str:
        return f"{model}|{setting}|{seed}"

    def run(self, model: str, setting: str, seed: int, extra: list[str]) -> dict:
        key = self.key(model, setting, seed)
        if key in self.res["runs"]:
            return self.res["runs"][key]
        where = self.out.with_suffix("") / f"{model}_{setting}_seed{seed}"
        r = run_training(model, self.dataset, where, [*self.sets, *extra, *seed_overrides(seed)], overwrite=True)
        rec = {**r.model_dump(include=set(KEEP)), "config": ZooRun(where).config()}
        self.res["runs"][key] = rec
        self.save()
        return rec

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.out, self.res, indent=2)

    def seeds_of(self, model: str, setting: str) -> list[dict]:
        runs = self.res["runs"]
        return [runs[k] for k in sorted(runs, key=lambda k: int(k.rsplit("|", 1)[1]))
                if k.startswith(f"{model}|{setting}|")]  # fmt: skip


def compare(per: dict[str, list[dict]], metric: str = "recall@20") -> dict:
    """Mean ± std per model, the reference (best mean validation) and a paired t-test over seeds
    against it; the best ID-only and the best multimodal model, each chosen on validation, and
    the multimodal one's relative test gain."""
    from scipy.stats import ttest_rel

    def mean_valid(m: str) -> float:
        return float(np.mean([r["valid"][metric] for r in per[m]]))

    ref = max(per, key=mean_valid)
    tests = {m: np.array([r["test"][metric] for r in rs]) for m, rs in per.items()}
    out: dict = {"reference": ref, "metric": metric, "models": {}}
    for m, rs in per.items():
        t = tests[m]
        paired = m != ref and len(t) > 1 and len(t) == len(tests[ref])
        out["models"][m] = {"seeds": len(t), "valid_mean": mean_valid(m),
                            **{c: [float(np.mean(v := [r["test"][c] for r in rs])), float(np.std(v))] for c in COLUMNS},
                            "p_vs_reference": float(ttest_rel(t, tests[ref]).pvalue) if paired else None}  # fmt: skip
    ids = [m for m in per if m in ID_ONLY]
    mms = [m for m in per if m not in ID_ONLY and per[m][0]["modalities"]]
    if ids and mms:
        bi, bm = max(ids, key=mean_valid), max(mms, key=mean_valid)
        ti, tm = out["models"][bi][metric][0], out["models"][bm][metric][0]
        out["multimodal_vs_id"] = {"best_id_only": bi, "best_multimodal": bm,
                                   "test_gain_pct": 100.0 * (tm - ti) / ti if ti else None}  # fmt: skip
    return out


def compare_markdown(title: str, cmp: dict) -> str:
    rows = [[m, f"{r['valid_mean']:.4f}", *(f"{r[c][0]:.4f} ± {r[c][1]:.4f}" for c in COLUMNS),
             "-" if r["p_vs_reference"] is None else f"{r['p_vs_reference']:.3g}"]
            for m, r in sorted(cmp["models"].items(), key=lambda kv: -kv[1]["recall@20"][0])]  # fmt: skip
    n = max(r["seeds"] for r in cmp["models"].values())
    head = ["model", "valid recall@20", *COLUMNS, "paired t-test p vs reference"]
    text = (f"## {title}\n\nTest, mean ± std over {n} seed(s); reference chosen on validation: "
            f"**{cmp['reference']}**.\n\n" + markdown_table(head, rows))  # fmt: skip
    if g := cmp.get("multimodal_vs_id"):
        gain = "n/a" if g["test_gain_pct"] is None else f"{g['test_gain_pct']:+.1f}%"
        text += (f"\n\nBest multimodal (on validation) {g['best_multimodal']} vs best ID-only "
                 f"{g['best_id_only']}: {gain} test Recall@20.")  # fmt: skip
    return text


def missing_rate_runs(bench: Bench, m: str, rates: list[float]) -> dict[str, dict]:
    """Seed-0 runs with each content modality dropped at each rate plus 10% cold items; an
    interactions-only model gets the same cold items once, for every rate."""
    mods = bench.seeds_of(m, "full")[0]["modalities"]
    if not mods:
        r = bench.run(m, "cold", 0, ["missing.cold_item_frac=0.1"])
        return {str(rate): r for rate in rates}
    return {str(rate): bench.run(m, f"missing{rate}", 0, [*(f"missing.item_rates.{x}={rate}" for x in mods),
                                                          "missing.cold_item_frac=0.1"])
            for rate in rates}  # fmt: skip


def missing_markdown(full: dict[str, dict], missing: dict[str, dict[str, dict]]) -> str:
    rates = sorted({r for d in missing.values() for r in d}, key=float)
    rows = [[f"{m} @ {rate}", *(f"{missing[m][rate]['test'][c]:.4f}" for c in COLUMNS)]
            for m in missing for rate in rates]  # fmt: skip
    drop = {m: [100.0 * (full[m]["test"]["recall@20"] - d[r]["test"]["recall@20"]) / full[m]["test"]["recall@20"]
                for r in rates] for m, d in missing.items()}  # fmt: skip
    lost = [[m, *(f"{x:.1f}" for x in d)] for m, d in sorted(drop.items(), key=lambda kv: kv[1][-1])]
    return ("## Under missing modalities (+10% cold items), seed 0, test\n\n" + markdown_table(["model", *COLUMNS], rows)
            + "\n\nRecall@20 lost against the same seed's full-modality run (%, lower is better):\n\n"
            + markdown_table(["model", *rates], lost))  # fmt: skip


def timings_markdown(full: dict[str, list[dict]]) -> str:
    rows = [[m, f"{rs[0]['epochs']} ({rs[0]['best_epoch']})", f"{rs[0]['seconds_per_epoch']:.2f}",
             f"{rs[0]['eval_seconds']:.2f}", f"{rs[0]['wall_seconds']:.0f}"] for m, rs in full.items()]  # fmt: skip
    return "Seed 0's runs:\n\n" + markdown_table(["model", "epochs (best)", "s/epoch", "eval s", "wall s"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--models", default="all", help="comma-separated, or all")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], help="override for every model")
    p.add_argument("--seeds", type=int, default=1, help="full-modality runs per model (seeds 0..N-1)")
    p.add_argument("--missing-rates", default="", help="e.g. 0.3,0.6,0.9: each content modality dropped "
                   "at that item rate plus 10%% cold items (seed 0)")  # fmt: skip
    p.add_argument("--missing-models", default="all", help="models that get the --missing-rates runs")
    p.add_argument("--dgmrec-seeds", type=int, default=0, help="also DGMRec's missing-modality protocol "
                   "(2/3 of items lose content, stratified over warm and 10%% cold items) with this many seeds")  # fmt: skip
    a = p.parse_args()
    models = sorted(ZOO) if a.models == "all" else a.models.split(",")
    bench = Bench(a.dataset, Path(a.out), a.set)
    plan = run_plan(models, a.seeds, a.dgmrec_seeds)
    for i, (m, setting, seed, extra) in enumerate(plan, 1):
        if Bench.key(m, setting, seed) not in bench.res["runs"]:
            print(f"[zoo {i}/{len(plan)}] {m}, {setting}, seed {seed}", flush=True)
        bench.run(m, setting, seed, extra)
        if i < len(plan) and plan[i][2] != seed:  # the last seed's report is the final one below
            write_report(bench, a, models, [])
    rates = [float(x) for x in a.missing_rates.split(",") if x]
    chosen = models if a.missing_models == "all" else a.missing_models.split(",")
    print(write_report(bench, a, models, rates, chosen))


def run_plan(models: list[str], seeds: int, dgmrec_seeds: int) -> list[tuple[str, str, int, list[str]]]:
    """(model, setting, seed, overrides), seed by seed: a run cut off hours in still has whole
    seeds to tabulate."""
    dgmrec = ["missing.protocol=dgmrec", "missing.cold_item_frac=0.1"]
    plan = []
    for s in range(max(seeds, dgmrec_seeds)):
        plan += [(m, "full", s, []) for m in models] if s < seeds else []
        plan += [(m, "dgmrec", s, dgmrec) for m in models] if s < dgmrec_seeds else []
    return plan


def write_report(bench: Bench, a: argparse.Namespace, models: list[str], rates: list[float],
                 chosen: list[str] = ()) -> str:  # fmt: skip
    """FILE.json's comparisons and FILE.md from the seeds recorded so far; rewritten after every
    seed, so a run cut off hours in leaves tables of the seeds it finished."""
    full = {m: rs for m in models if (rs := bench.seeds_of(m, "full")[: a.seeds])}
    parts = []
    if full:
        bench.res["full"] = compare(full)
        parts += [compare_markdown("Full modality", bench.res["full"]), timings_markdown(full)]
    if rates:
        missing = {m: missing_rate_runs(bench, m, rates) for m in chosen}
        parts.append(missing_markdown({m: full[m][0] for m in chosen}, missing))
    proto = {m: rs for m in models if (rs := bench.seeds_of(m, "dgmrec")[: a.dgmrec_seeds])}
    if proto:
        bench.res["dgmrec_protocol"] = compare(proto)
        parts.append(compare_markdown("DGMRec protocol (2/3 of items lose content, +10% cold items)",
                                      bench.res["dgmrec_protocol"]))  # fmt: skip
        if full:
            parts.append(protocol_loss_markdown(full, proto))
    bench.save()
    text = f"# {a.dataset} (test at the best valid epoch)\n\n" + "\n\n".join(parts) + "\n"
    Path(a.out).with_suffix(".md").write_text(text)
    return text


def protocol_loss_markdown(full: dict[str, list[dict]], proto: dict[str, list[dict]]) -> str:
    """What each model loses to the DGMRec protocol, against its own full-modality runs of the
    same seeds (the issue's comparison: a missing-modality model should lose less)."""
    rows = []
    for m, rs in proto.items():
        seeds = min(len(rs), len(full.get(m, [])))
        if not seeds:
            continue
        f = np.array([r["test"]["recall@20"] for r in full[m][:seeds]])
        g = np.array([r["test"]["recall@20"] for r in rs[:seeds]])
        lost = float(np.mean(100.0 * (f - g) / f))
        rows.append((lost, [m, f"{f.mean():.4f}", f"{g.mean():.4f}", f"{lost:.1f}", str(seeds)]))
    return ("Test Recall@20 lost to the DGMRec protocol against the same seeds' full-modality runs "
            "(%, lower is better):\n\n" + markdown_table(["model", "full", "protocol", "lost %", "seeds"],
            [row for _, row in sorted(rows, key=lambda x: x[0])]))  # fmt: skip


if __name__ == "__main__":
    main()
