"""The zoo's step code for the Ray Train harness (``metamodal.harness``): DDP over BPR
triples, full-ranking validation on rank 0, early stopping on the configured metric, and a
checkpoint at every evaluation holding both the latest state (to resume after a worker failure)
and the best one (what is reported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from metamodal.harness import Worker
from metamodal.storage import Storage
from metamodal.train.config import VALID_KS, RunConfig, TrainSection


class ZooJob(BaseModel):
    """What each worker needs: the resolved run configuration, the model's params, where the
    split is saved, whether missingness masks sit beside it, and the storage a worker on
    another node copies the split and the features from."""

    model_config = ConfigDict(frozen=True)
    run: RunConfig
    params: dict[str, Any]
    split_dir: str
    missing_on: bool
    storage: Storage | None = None


def zoo_steps(job: ZooJob, w: Worker) -> None:
    """The zoo's per-step code: an epoch of triples, then (every ``eval_every``) rank 0's
    validation, early stopping and a checkpoint of the latest and the best weights."""
    from metamodal.train.sampler import TripleSampler

    t = job.run.train
    w.note_worker_group()  # a sweep's driver releases it if Tune kills this run
    ws = _worker_state(job, w)
    state, best_state = _resume(ws, w)
    sampler = TripleSampler(ws.data.train, t.seed)
    for epoch in range(state["epoch"], t.epochs):
        w.maybe_fail(epoch, t.fail_at_epoch)
        row = _train_epoch(ws, sampler, epoch, w, t.batch_size)
        if row.get("diverged"):  # every rank saw it (Worker.any): stop, keep the last good state
            _stop_diverged(job, ws, row, state, best_state, w)
            break
        state["epoch"] = epoch + 1
        if (epoch + 1) % t.eval_every and epoch + 1 < t.epochs:
            _log(job, row, w)
            continue
        stop, files = False, None
        if w.chief:
            stop, best_state = _evaluate(ws, row, state, best_state, epoch, t)
            files = {"last.pt": {"model": ws.core.state_dict(), "opt": ws.opt.state_dict()},
                     "best.pt": best_state, "state.json": state}  # fmt: skip
        _log(job, row, w)
        w.report({**row, **state}, files)
        if w.agree(stop):
            break


@dataclass
class _Worker:
    """This worker's data, model (``model`` wrapped for DDP, ``core`` the module itself),
    optimiser and device."""

    ds: Any
    split: Any
    miss: Any
    data: Any
    model: torch.nn.Module
    core: Any
    opt: torch.optim.Optimizer
    device: torch.device


def _worker_state(job: ZooJob, w: Worker) -> _Worker:
    from metamodal.data import load_dataset
    from metamodal.data.missing import Missingness
    from metamodal.data.splits import Split
    from metamodal.models import ZOO
    from metamodal.train.data import attach_features, build_model_data, content_modalities

    cfg = job.run
    if job.storage:  # this node may not be the driver's: bring what the driver wrote
        job.storage.pull(Path(job.split_dir).parent, under="split")
        if cfg.data.features:
            job.storage.pull(cfg.data.features)
    ds = attach_features(load_dataset(cfg.dataset), cfg.data.features)
    split = Split.load(job.split_dir, ds)
    miss = Missingness.load(job.split_dir) if job.missing_on else None
    names = content_modalities(ds, cfg.data.modalities)
    data, _ = build_model_data(ds, split, names, miss, cfg.data.normalise)
    cls = ZOO[cfg.model]
    torch.manual_seed(cfg.train.seed)
    model, core = w.ddp(cls(data, cls.Params(**job.params)))
    # fused Adam: one kernel over all parameters
    opt = torch.optim.Adam(core.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                           fused=True)  # fmt: skip
    return _Worker(ds, split, miss, data, model, core, opt, w.device)


def _resume(ws: _Worker, w: Worker) -> tuple[dict, dict | None]:
    """(loop state, best weights): fresh, or from the checkpoint Ray Train hands a restarted
    worker group."""
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad": 0, "resumed_from": []}
    best_state = None  # rank 0 keeps the best weights in memory; every checkpoint carries them
    saved = w.restore(["last.pt", "best.pt", "state.json"])
    if saved:  # resumed after a failure: carry on from the last evaluation
        ws.core.load_state_dict(saved["last.pt"]["model"])
        ws.opt.load_state_dict(saved["last.pt"]["opt"])
        best_state, state = saved["best.pt"], saved["state.json"]
        state.setdefault("resumed_from", []).append(state["epoch"])
    w.start_log(state["epoch"], resumed=saved is not None)
    return state, best_state


def _train_epoch(ws: _Worker, sampler, epoch: int, w: Worker, bs: int) -> dict:
    core, model, opt, device = ws.core, ws.model, ws.opt, ws.device
    core.train()
    core.set_epoch(epoch)
    t0 = time.perf_counter()
    u, p, n = (torch.from_numpy(a) for a in sampler.epoch(epoch, w.rank, w.world))
    losses = []
    for b, s in enumerate(range(0, len(u), bs)):
        sl = slice(s, s + bs)
        loss = model(u[sl].to(device), p[sl].to(device), n[sl].to(device))  # DDP syncs
        if w.any(not bool(torch.isfinite(loss.detach()))):  # before backward: no step with it
            where = f"epoch {epoch + 1}, batch {b + 1} of {-(-len(u) // bs)}"
            return {"epoch": epoch + 1, "diverged": f"{where}: loss {float(loss.detach())} on rank "
                    f"{w.rank} (non-finite on at least one rank)"}  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_seconds": time.perf_counter() - t0}


def _stop_diverged(job: ZooJob, ws: _Worker, row: dict, state: dict, best_state, w: Worker) -> None:
    """Report the divergence with the weights as they were before the bad batch: the driver
    turns it into an error, and the best checkpoint stays the last finite evaluation's."""
    state["diverged"] = f"{job.run.model}: {row['diverged']}"
    files = None
    if w.chief:
        print(f"{state['diverged']}: stopping", flush=True)
        files = {"last.pt": {"model": ws.core.state_dict(), "opt": ws.opt.state_dict()},
                 "best.pt": best_state, "state.json": state}  # fmt: skip
    w.report(dict(state), files)


def _evaluate(ws: _Worker, row: dict, state: dict, best_state, epoch: int, t: TrainSection):
    """Rank 0 scores validation into ``row``; (stop early, best weights)."""
    from metamodal.eval.protocol import evaluate_split

    t1 = time.perf_counter()
    res = evaluate_split(ws.core.scorer(), ws.ds, ws.split, "valid", ws.miss, slices=False,
                         ks=VALID_KS)  # fmt: skip
    row.update({f"valid_{k}": v for k, v in res.metrics.items()})
    row["eval_seconds"] = time.perf_counter() - t1
    if res.metrics[t.valid_metric] > state["best"]:  # a NaN metric is never the best
        state.update(best=res.metrics[t.valid_metric], best_epoch=epoch + 1, bad=0)
        best_state = {k: v.detach().cpu().clone() for k, v in ws.core.state_dict().items()}
    else:
        state["bad"] += 1
    return state["bad"] >= t.patience, best_state


def _log(job: ZooJob, row: dict, w: Worker) -> None:
    if not w.chief:
        return
    w.log(row)
    metric = job.run.train.valid_metric
    valid = row.get(f"valid_{metric}")
    epochs = job.run.train.epochs
    left = (epochs - row["epoch"]) * (row["train_seconds"] + row.get("eval_seconds", 0.0))
    print(
        f"{job.run.model} epoch {row['epoch']:>4}/{epochs}  loss {row['loss']:.4f}  "
        f"{row['train_seconds']:.2f} s" + (f"  valid {metric} {valid:.4f}" if valid is not None else "")
        + (f"  (at most {left:.0f} s left)" if left >= 1 else ""),
        flush=True,
    )
