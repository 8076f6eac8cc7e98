"""Ray Tune sweeps over the zoo's fusion hyperparameters (``tune_spaces/*.yaml``).

Each trial is a function trainable that runs one zoo training on Ray Train (Train V2 cannot be
wrapped by ``Tuner(TorchTrainer)``; Tune's ``TuneReportCallback`` forwards every epoch's report),
so a trial is exactly the run ``metamodal train`` would make with the trial's overrides. ASHA
stops weak trials on validation Recall@20; test is never read (``test_eval=False``).

Writes ``OUT/trials.csv`` and ``trials.md`` (the trial table), ``OUT/best.yaml`` (an override
file ``metamodal train --config`` loads), ``OUT/summary.json``, ``OUT/curves.png``,
TensorBoard event files under ``OUT/ray_results`` and an offline wandb run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from metamodal.eval.tables import markdown_table
from metamodal.rundir import write_json
from metamodal.storage import Storage, sync_up

SAMPLERS = ("choice", "uniform", "loguniform", "randint", "grid")


class TuneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    metric: str = "valid_recall@20"
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(16, ge=1)
    max_epochs: int = Field(80, ge=1)
    grace_period: int = Field(5, ge=1)
    reduction_factor: int = Field(3, ge=2)
    space: dict[str, dict[str, list[Any]]]


def load_spec(path: str | Path) -> TuneSpec:
    path = Path(path)
    try:
        spec = TuneSpec(**yaml.safe_load(path.read_text()))
    except Exception as e:
        raise ValueError(f"{path}: {e}") from None
    for key, s in spec.space.items():
        if len(s) != 1 or next(iter(s)) not in SAMPLERS:
            raise ValueError(
                f"{path}: space.{key} must be one of {SAMPLERS}, e.g. {{choice: [..]}}"
            )
    return spec


def param_space(spec: TuneSpec) -> dict:
    from ray import tune

    make = {
        "choice": tune.choice,
        "grid": tune.grid_search,
        "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
        "randint": lambda a: tune.randint(*a),
    }
    return {k: make[kind](args) for k, s in spec.space.items() for kind, args in s.items()}


def nested(flat: dict[str, Any]) -> dict:
    """``{"params.alpha": 0.1}`` -> ``{"params": {"alpha": 0.1}}`` (an override file)."""
    out: dict = {}
    for key, v in flat.items():
        *head, last = key.split(".")
        d = out
        for h in head:
            d = d.setdefault(h, {})
        d[last] = v.item() if hasattr(v, "item") else v
    return out


def _trial(config: dict, *, model: str, dataset: str, overrides: list[str], cpus: float, runs: str) -> None:
    """One trial: a zoo training whose epoch reports reach Tune. Its run directory sits beside
    the sweep (``runs``), not inside the trial's own directory: Tune copies that to its storage
    while the training rotates checkpoints in it, and a checkpoint removed mid-copy printed a
    traceback."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from metamodal.train.runner import run_training
    from metamodal.tuning.placement import note_owner

    out = Path(runs) / ray.tune.get_context().get_trial_id()
    note_owner(out)
    trial = [f"{k}={v}" for k, v in config.items()]
    run_training(model, dataset, out, [*overrides, *trial], overwrite=True,
                 callbacks=[TuneReportCallback()], cpus_per_worker=cpus, test_eval=False)  # fmt: skip


def run_tune(
    space_file: str | Path,
    dataset: str | Path,
    out: str | Path,
    overrides: list[str] | None = None,
    num_samples: int | None = None,
    max_epochs: int | None = None,
    concurrent: int | None = None,
    wandb: bool = True,
) -> dict:
    from ray import tune

    from metamodal.harness import side_by_side_share
    from metamodal.raylogs import verbose
    from metamodal.tuning.placement import release_new, reserved_by_this_job, stop_orphan_cleaners

    spec = load_spec(space_file)
    spec = spec.model_copy(update={k: v for k, v in {"num_samples": num_samples,
                                                     "max_epochs": max_epochs}.items() if v})  # fmt: skip
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = Storage.from_env()
    where, fs = (storage.train_storage(out) if storage
                 else (str(out / "ray_results"), None))  # fmt: skip
    concurrent, per_trial = side_by_side_share(concurrent or spec.num_samples)
    runs = out / "trials"
    trainable = tune.with_parameters(_trial, model=spec.model, dataset=str(Path(dataset).resolve()),
                                     overrides=_trial_overrides(overrides, spec), cpus=per_trial,
                                     runs=str(runs))  # fmt: skip
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.05}),
        param_space=param_space(spec),
        tune_config=_tune_config(spec, concurrent),
        run_config=tune.RunConfig(
            name=f"tune-{spec.model}",
            storage_path=where,
            storage_filesystem=fs,
            callbacks=_callbacks(out, runs, wandb),
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=1 if verbose() else 0,  # its status tables: Ray's chatter
        ),  # fmt: skip
    )
    before = reserved_by_this_job()
    try:
        grid = tuner.fit()
    finally:
        stop_orphan_cleaners()
        if n := release_new(before):
            print(f"tune: released {n} placement group(s) left by stopped trials", flush=True)
    return write_results(grid, spec, out)


def _trial_overrides(overrides: list[str] | None, spec: TuneSpec) -> list[str]:
    """Every trial's fixed overrides: paths made absolute (trials run in their own working
    directories), the epoch cap, and no patience or retries of its own (ASHA and Tune decide)."""
    fixed = [f"data.features={Path(o.partition('=')[2]).resolve()}"
             if o.startswith("data.features=") else o for o in overrides or []]  # fmt: skip
    return [
        *fixed,
        f"train.epochs={spec.max_epochs}",
        f"train.patience={spec.max_epochs}",  # ASHA decides when a trial stops
        "train.retrieval_check=false",
        "train.max_failures=0",  # Tune retries trials; a retrying controller outlives its trial
    ]


def _tune_config(spec: TuneSpec, concurrent: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(time_attr="training_iteration", max_t=spec.max_epochs,
                         grace_period=min(spec.grace_period, spec.max_epochs),
                         reduction_factor=spec.reduction_factor)  # fmt: skip
    return tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                           max_concurrent_trials=concurrent, scheduler=asha)  # fmt: skip


def _callbacks(out: Path, runs: Path, wandb: bool) -> list:
    callbacks = [_release_callback(runs)]
    if wandb:
        from ray.air.integrations.wandb import WandbLoggerCallback

        os.environ.setdefault("WANDB_MODE", "offline")
        callbacks.append(WandbLoggerCallback(project="metamodal-tune", mode=os.environ["WANDB_MODE"],
                                             dir=str(out)))  # fmt: skip
    return callbacks


def _release_callback(runs: Path):
    import time

    from ray import tune

    from metamodal.tuning.placement import owner_dead, release_worker_group

    class ReleaseWorkerGroups(tune.Callback):
        """Frees an ended trial's Train placement group once its actor is dead
        (``tuning/placement.py``)."""

        def __init__(self) -> None:
            self.pending: list[Path] = []

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.pending.append(runs / trial.trial_id)

        on_trial_error = on_trial_complete

        def on_step_begin(self, iteration, trials, **info) -> None:
            for run in [r for r in self.pending if owner_dead(r)]:
                release_worker_group(run)
                self.pending.remove(run)

        def on_experiment_end(self, trials, **info) -> None:
            end = time.monotonic() + 30
            while self.pending and time.monotonic() < end:
                self.on_step_begin(0, trials)
                time.sleep(0.5)
            for run in self.pending:
                release_worker_group(run)

    return ReleaseWorkerGroups()


def write_results(grid, spec: TuneSpec, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, failed, unreported = [], 0, 0
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in grid:
        if r.error is not None:
            failed += 1
            continue
        hist = r.metrics_dataframe
        if hist is None or spec.metric not in hist:  # stopped (Ctrl-C) before its first epoch
            unreported += 1
            continue
        best = float(hist[spec.metric].max() if spec.mode == "max" else hist[spec.metric].min())
        rows.append({"trial": r.metrics.get("trial_id", Path(r.path).name), **{k: r.config[k] for k in spec.space},
                     spec.metric: best, "epochs": int(len(hist))})  # fmt: skip
        ax.plot(hist["training_iteration"], hist[spec.metric], lw=1)
    if not rows:
        raise RuntimeError(f"no trial reported {spec.metric}: {failed} failed, {unreported} stopped "
                           f"before their first epoch; see {out / 'ray_results'}")  # fmt: skip
    rows.sort(key=lambda r: r[spec.metric], reverse=spec.mode == "max")
    ax.set(xlabel="epoch", ylabel=spec.metric, title=f"{spec.model}: {len(rows)} trials (ASHA)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)

    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "trials.csv", index=False)
    table = md_table(rows)
    (out / "trials.md").write_text(table + "\n")
    best = rows[0]
    (out / "best.yaml").write_text(
        f"# best of {len(rows)} trials of {spec.model} by {spec.metric} "
        f"({best[spec.metric]:.4f}); load with `metamodal train --config`\n"
        + yaml.safe_dump(nested({k: best[k] for k in spec.space}), sort_keys=True)
    )
    summary = {"model": spec.model, "metric": spec.metric, "trials": len(rows), "failed": failed,
               "best": best, "best_config": str(out / "best.yaml"),
               "table": str(out / "trials.md"), "plot": str(out / "curves.png"),
               "tensorboard": str(out / "ray_results")}  # fmt: skip
    write_json(out / "summary.json", summary, indent=2, default=str)
    sync_up(out)
    print(table, flush=True)
    return summary


def md_table(rows: list[dict]) -> str:
    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    head = list(rows[0])
    return markdown_table(head, [[cell(r[h]) for h in head] for r in rows])
