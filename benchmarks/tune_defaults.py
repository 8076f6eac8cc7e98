"""Tune every zoo model on one dataset with the platform's own Ray Tune sweeps and commit the
chosen values as that dataset's config layer.

    python benchmarks/tune_defaults.py --dataset ../shared/data/ml100k-mm \
        --set data.features=runs/ml100k-emb [--models all] [--num-samples 12] [--max-epochs 80]

For each model: ``run_tune(tune_spaces/<model>.yaml, ...)`` (ASHA on validation Recall@20; test
is never read), its trial table copied to ``benchmarks/results/tune_<name>/<model>.md`` with
its curves, the sweep's record added to ``summary.json`` there, and the ``models:`` block of
``platform/metamodal/configs/datasets/<name>.yaml`` regenerated from every record (``<name>``: the
name the dataset declares, ``catalog.json``'s for a catalogue, else its folder's). A model
already in ``summary.json`` with the same budget and overrides is kept (``--redo`` sweeps it
again), so a cut-off run resumes at the next model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from metamodal.data import dataset_name
from metamodal.models import ZOO
from metamodal.rundir import write_json
from metamodal.tuning import load_spec, run_tune
from metamodal.tuning.dataset_layer import write_dataset_layer

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ROOT / "platform" / "metamodal" / "configs" / "datasets"


def sweep_record(
    summary: dict, spec_file: Path, budget: dict, overrides: list[str], wall: float
) -> dict:
    spec = load_spec(spec_file)
    return {**{k: summary[k] for k in ("metric", "trials", "failed", "best")},
            "searched": sorted(spec.space), "space": str(spec_file.relative_to(ROOT)),
            "num_samples": budget["num_samples"] or spec.num_samples,
            "max_epochs": budget["max_epochs"] or spec.max_epochs,
            "overrides": overrides, "wall_seconds": round(wall, 1)}  # fmt: skip


def tune_one(
    model: str, dataset: str, work: Path, results: Path, overrides: list[str], budget: dict
) -> dict:
    spec_file = ROOT / "tune_spaces" / f"{model}.yaml"
    t0 = time.perf_counter()
    summary = run_tune(spec_file, dataset, work / model, overrides, wandb=False, **budget)
    rec = sweep_record(summary, spec_file, budget, overrides, time.perf_counter() - t0)
    if rec["trials"] + rec["failed"] < rec["num_samples"]:  # Tune returns what it had on Ctrl-C
        raise SystemExit(f"{model}: the sweep ended after {rec['trials'] + rec['failed']} of "
                         f"{rec['num_samples']} trials (interrupted); not recorded")  # fmt: skip
    shutil.copyfile(work / model / "trials.md", results / f"{model}.md")
    shutil.copyfile(work / model / "curves.png", results / f"{model}_curves.png")
    return rec


def same_sweep(old: dict, overrides: list[str], budget: dict) -> bool:
    """The recorded sweep answers this request: same overrides, and the budget asked (if any)."""
    return old["overrides"] == overrides and all(
        v is None or old[k] == v for k, v in budget.items()
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--models", default="all", help="comma-separated, or all")
    p.add_argument(
        "--set", action="append", default=[], help="override for every trial (data.features=...)"
    )
    p.add_argument(
        "--num-samples", type=int, default=None, help="trials per model (default: the space's)"
    )
    p.add_argument(
        "--max-epochs", type=int, default=None, help="epochs per trial (default: the space's)"
    )
    p.add_argument("--work", default="runs/tune_defaults", help="the sweeps' run directories")
    p.add_argument("--redo", action="store_true", help="sweep models already recorded again")
    a = p.parse_args()
    name = dataset_name(a.dataset)
    models = sorted(ZOO) if a.models == "all" else a.models.split(",")
    unknown = [m for m in models if m not in ZOO]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; the zoo has {sorted(ZOO)}")
    results = ROOT / "benchmarks" / "results" / f"tune_{name}"
    results.mkdir(parents=True, exist_ok=True)
    record_file = results / "summary.json"
    sweeps: dict = json.loads(record_file.read_text()) if record_file.is_file() else {}
    try:  # the overview stays current when a sweep is refused or the run is interrupted
        sweep_models(models, sweeps, a, results, name)
    finally:
        if sweeps:
            (results / "README.md").write_text(overview(name, sweeps))


def sweep_models(models: list[str], sweeps: dict, a: argparse.Namespace, results: Path, name: str) -> None:
    """Sweep each model not yet recorded with this budget, recording it and regenerating the
    dataset's layer as soon as it ends (a cut-off run resumes at the next model)."""
    budget = {"num_samples": a.num_samples, "max_epochs": a.max_epochs}
    for i, m in enumerate(models, 1):
        old = sweeps.get(m)
        if old and not a.redo and same_sweep(old, a.set, budget):
            print(f"[{i}/{len(models)}] {m}: kept (valid {old['best'][old['metric']]:.4f})", flush=True)
            continue
        print(f"[{i}/{len(models)}] {m}: sweeping", flush=True)
        sweeps[m] = tune_one(m, a.dataset, Path(a.work) / name, results, a.set, budget)
        write_json(results / "summary.json", sweeps, indent=2, default=str)
        layer = write_dataset_layer(LAYERS / f"{name}.yaml", sweeps)
        best = sweeps[m]["best"]
        print(f"[{i}/{len(models)}] {m}: valid {best[sweeps[m]['metric']]:.4f} in "
              f"{sweeps[m]['wall_seconds']:.0f} s -> {layer.relative_to(ROOT)}", flush=True)  # fmt: skip


def overview(name: str, sweeps: dict) -> str:
    from metamodal.eval.tables import markdown_table

    rows = [[m, f"{s['best'][s['metric']]:.4f}", str(s["trials"]), str(s["max_epochs"]),
             ", ".join(f"{k}={_cell(s['best'][k])}" for k in s["searched"]), f"{s['wall_seconds']:.0f}",
             f"[{m}.md]({m}.md)"] for m, s in sorted(sweeps.items())]  # fmt: skip
    head = [
        "model",
        "best valid recall@20",
        "trials",
        "max epochs",
        "chosen",
        "sweep s",
        "trials table",
    ]
    overrides = sorted({" ".join(s["overrides"]) for s in sweeps.values()} - {""})
    used = "; ".join(f"`{o}`" for o in overrides) or "no overrides"
    return (f"# Tuned defaults for {name} (validation only)\n\n" + markdown_table(head, rows) + "\n\n"
            f"Every trial ran with: {used} (two trials at a time on a 2-core host: `sweep s` is wall time). "
            "A trial's epoch cap favours larger learning rates than a run to convergence would; the chosen "
            "values then train under the normal budget (300 epochs, early stopping). A zoo model not listed "
            "keeps the code's defaults on this dataset.\n")  # fmt: skip


def _cell(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
