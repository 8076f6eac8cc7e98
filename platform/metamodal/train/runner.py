"""The driver side of zoo training: resolve the config, save the split, run the worker loop in a
``TorchTrainer`` (resumed from its last checkpoint after a worker failure), then score the best
checkpoint on valid and test and write ``results.json``, ``metrics.jsonl`` and a PNG of the
learning curves into ``OUT``.

Scaling a graph model past one machine's memory: LightGCN propagates over the full graph every
step by default (cheap up to tens of millions of edges: the adjacency is one sparse CSR). Past
that, ``--set params.propagation=minibatch [--set params.fanout=15]`` computes each batch's
embeddings from its own L-hop neighbourhood only (exact, or neighbour-sampled with a fanout;
``metamodal.models.minibatch``) and scores the catalogue in node chunks, so a step's memory
follows the batch; Ray Train's workers already take disjoint shards of the triples. What is not
built: embedding tables that outgrow one device, which would shard by rows (a parameter server
or torchrec's sharded embeddings) — no dataset this platform ships with comes near that.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from metamodal.data import Dataset, load_dataset
from metamodal.data.splits import Split, make_split
from metamodal.eval.protocol import evaluate_split
from metamodal.harness import plot_curves, read_checkpoint
from metamodal.models import ZOO
from metamodal.rundir import ZooResults, ZooRun
from metamodal.runlog import read_metrics
from metamodal.storage import Storage, forget_checkpoints
from metamodal.train.config import load_config
from metamodal.train.data import (
    attach_features,
    build_model_data,
    content_modalities,
    missingness_for,
)


def prepare_split(ds: Dataset, method: str | None, seed: int, out: Path) -> Split:
    d = out / "split"
    if Split.saved(d):
        return Split.load(d, ds)
    split = make_split(ds, method, seed)
    split.save(d)
    return split


def run_training(
    model: str,
    dataset: str | Path,
    out: str | Path,
    overrides: list[str] | None = None,
    override_file: str | Path | None = None,
    overwrite: bool = False,
    callbacks: list | None = None,
    cpus_per_worker: float | None = None,
    test_eval: bool = True,
) -> ZooResults:
    """Train ``model`` into ``out``. ``callbacks`` go to Ray Train's RunConfig (Tune's report
    callback), ``cpus_per_worker`` overrides the CPU share, and ``test_eval=False`` leaves the
    test part unread (tuning selects on validation only)."""
    dataset, out = Path(dataset).resolve(), Path(out).resolve()  # found again from anywhere
    storage = Storage.from_env()
    if storage:  # a run begun elsewhere resumes here
        storage.pull(out)
    cfg, params = resolve_config(model, dataset, overrides, override_file, out, overwrite)
    if storage and cfg.data.features:
        storage.pull(cfg.data.features)
    ds = attach_features(load_dataset(dataset), cfg.data.features)
    split = prepare_split(ds, cfg.split.method, cfg.split.seed, out)
    miss = missingness_for(ds, split, cfg.missing, out)
    if storage:  # workers on other nodes read the split from there
        storage.push(out)
    t0 = time.perf_counter()
    result = fit_on_ray(model, cfg, params, out, miss is not None, callbacks, cpus_per_worker, storage)
    wall = time.perf_counter() - t0
    names = content_modalities(ds, cfg.data.modalities)
    net, state = best_model(result, model, ds, split, names, miss, cfg, params, out)
    scorer = net.scorer()
    valid = evaluate_split(scorer, ds, split, "valid", miss, slices=False)
    test = evaluate_split(scorer, ds, split, "test", miss) if test_eval else None
    run = ZooRun(out)
    curve = read_metrics(run.metrics_file)
    res = ZooResults(
        model=model,
        dataset=str(dataset),
        valid=valid.metrics,
        test=test.metrics if test else None,
        test_slices=test.slices if test else None,
        epochs=state["epoch"],
        best_epoch=state["best_epoch"],
        resumed_from=state.get("resumed_from", []),
        **curve_timings(curve),
        wall_seconds=wall,
        modalities=names,
        missing=miss.summary() if miss else None,
        checkpoint=str(run.model_file),
        retrieval=retrieval_check(net, cfg.train.seed) if cfg.train.retrieval_check else None,
    )
    run.write_results(res)
    metric = cfg.train.valid_metric
    plot_curves(curve, [("loss", "training loss"), (f"valid_{metric}", f"valid {metric}")],
                out / "curves.png", model)  # fmt: skip
    if storage:
        storage.push(out)
    print_summary(res, wall)
    return res


def run_side_by_side(runs: dict[str, Path], dataset: str | Path, overrides: list[str],
                     concurrent: int | None = None) -> dict[str, ZooResults]:  # fmt: skip
    """Train each ``model -> out`` in ``runs`` (as ``run_training(..., overwrite=True)``), as
    many at once as the cluster's CPUs allow (``concurrent``: at most that many); one on a
    GPU cluster, where each run takes the device. A run that fails does not stop the others;
    the first failure is raised, naming its model, once they have ended."""
    from concurrent.futures import ThreadPoolExecutor

    import ray

    from metamodal.harness import side_by_side_share

    n, share = side_by_side_share(concurrent or len(runs))
    if n == 1 or ray.cluster_resources().get("GPU", 0) > 0:
        return {m: run_training(m, dataset, out, overrides, overwrite=True) for m, out in runs.items()}
    with ThreadPoolExecutor(n, thread_name_prefix="zoo") as pool:
        futures = {m: pool.submit(run_training, m, dataset, out, overrides, overwrite=True,
                                  cpus_per_worker=share) for m, out in runs.items()}  # fmt: skip
    failed = {m: err for m, f in futures.items() if (err := f.exception()) is not None}
    if failed:
        m, err = next(iter(failed.items()))
        raise RuntimeError(f"zoo {m} failed ({len(failed)} of {len(runs)} runs did): {err}") from err
    return {m: f.result() for m, f in futures.items()}


def resolve_config(model, dataset: Path, overrides, override_file, out: Path, overwrite: bool):
    """The validated config, claimed for ``out``: the same one again resumes from Ray Train's
    checkpoint; another one refuses unless ``overwrite`` (then the old run's state goes, in
    storage too)."""
    cfg, params = load_config(model, dataset, overrides, override_file)
    if cfg.data.features:  # workers (and later readers of config.json) may run elsewhere
        cfg.data.features = str(Path(cfg.data.features).resolve())
    resolved = {**cfg.model_dump(), "params": params.model_dump()}
    status = ZooRun(out).claim(resolved, overwrite)
    if status == "new":
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if status != "same":
        forget_checkpoints(out)
    return cfg, params


def fit_on_ray(model, cfg, params, out: Path, missing_on: bool, callbacks,
               cpus_per_worker: float | None, storage: Storage | None):  # fmt: skip
    """The zoo's step code (``train.loop``) on the harness; its result holds the best
    checkpoint."""
    from metamodal.harness import RunSpec, fit
    from metamodal.train.loop import ZooJob, zoo_steps

    t = cfg.train
    job = ZooJob(run=cfg, params=params.model_dump(), split_dir=str(out / "split"),
                 missing_on=missing_on, storage=storage)  # fmt: skip
    spec = RunSpec(name=f"train-{model}", out=out, workers=t.workers, use_gpu=t.use_gpu,
                   cpus_per_worker=cpus_per_worker, max_failures=t.max_failures, threads=t.threads,
                   placement_strategy=t.placement_strategy)  # fmt: skip
    return fit(zoo_steps, job, spec, callbacks=callbacks)


class TrainingDiverged(RuntimeError):
    """The loss went non-finite: the run stopped before the bad batch's step."""


def best_model(result, model: str, ds, split, names, miss, cfg, params, out: Path):
    """The model at its best checkpoint, saved as ``model.pt``, and the loop's state."""
    saved = read_checkpoint(result, ["best.pt", "state.json"])
    state = saved["state.json"]
    if state.get("diverged"):
        raise TrainingDiverged(f"{state['diverged']}; lower train.lr or check the features "
                               f"(the last finite state is in {out / 'ray_results'})")  # fmt: skip
    torch.manual_seed(cfg.train.seed)
    data, _ = build_model_data(ds, split, names, miss, cfg.data.normalise)
    net = ZOO[model](data, params)
    net.load_state_dict(saved["best.pt"])
    ZooRun(out).save_model(net.state_dict())
    net.set_epoch(state["best_epoch"] - 1)  # staged models score as at the kept epoch
    return net, state


def curve_timings(curve: list[dict]) -> dict:
    epoch_s = [r["train_seconds"] for r in curve]
    evals = [r["eval_seconds"] for r in curve if "eval_seconds" in r]
    return {"seconds_per_epoch": float(np.median(epoch_s)) if epoch_s else None,
            "eval_seconds": float(np.median(evals or [0]))}  # fmt: skip


def print_summary(res: ZooResults, wall: float) -> None:
    shown = ("test", res.test) if res.test else ("valid", res.valid)
    print(
        f"{res.model}: best epoch {res.best_epoch} of {res.epochs}; {shown[0]} recall@20 "
        f"{shown[1]['recall@20']:.4f} ndcg@20 {shown[1]['ndcg@20']:.4f}; "
        f"{res.seconds_per_epoch:.2f} s/epoch; {wall:.0f} s",
        flush=True,
    )


def retrieval_check(net, seed: int, k: int = 20, n_queries: int = 2000) -> dict:
    """Each faiss index kind over the model's item vectors, against exact top-k of user vectors."""
    from metamodal.retrieval.index import KINDS, IndexSpec, ItemIndex, recall_vs_exact

    u, i = net.numpy_vectors(np.float32)
    users = np.random.default_rng(seed).permutation(len(u))[:n_queries]
    out = {}
    for kind in KINDS:
        t0 = time.perf_counter()
        index = ItemIndex(i, IndexSpec(kind=kind))
        built = time.perf_counter() - t0
        t1 = time.perf_counter()
        index.search(u[users], k)
        out[kind] = {
            f"recall@{k}_vs_exact": recall_vs_exact(index, u[users], i, k),
            "build_seconds": built,
            "search_ms_per_query": (time.perf_counter() - t1) / len(users) * 1e3,
            "on_gpu": index.on_gpu,
        }
    return out
