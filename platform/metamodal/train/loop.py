"""The Ray Train worker loop for the zoo: DDP over BPR triples, full-ranking validation on rank
0, early stopping on the configured metric, and a checkpoint at every evaluation holding both
the latest state (to resume after a worker failure) and the best one (what is reported).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

WORKER_GROUP_NOTE = ".worker_group_pg"  # the placement group a sweep releases if Tune kills the run


def note_worker_group(out: str | Path) -> None:
    """Rank 0 writes its workers' placement group id into the run directory: Ray Train leaves
    the group reserved when a Tune trial is killed, and only this id lets the sweep free it."""
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    if pg is not None:
        (Path(out) / WORKER_GROUP_NOTE).write_text(pg.id.hex())


def _stop_together(stop: bool, world: int) -> bool:
    """Rank 0 decides; every rank must leave the epoch loop at the same step."""
    if world == 1:
        return stop
    flag = torch.tensor([1 if stop else 0])
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def train_loop(config: dict) -> None:
    import ray.train

    from metamodal.raylogs import quiet_ray_train_logs
    from metamodal.train.sampler import TripleSampler

    quiet_ray_train_logs()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if rank == 0:  # a sweep's driver releases it if Tune kills this run (tuning/placement.py)
        note_worker_group(config["out"])
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    w = _worker_state(config)
    state, best_state = _resume(w.core, w.opt, rank, config)
    sampler = TripleSampler(w.data.train, config["seed"])
    fail_at = config.get("fail_at_epoch")
    for epoch in range(state["epoch"], config["epochs"]):
        if fail_at and epoch == fail_at and not Path(config["out"], ".failed_once").exists():
            Path(config["out"], ".failed_once").touch()  # fault injection for the resume test
            os._exit(1)
        row = _train_epoch(w, sampler, epoch, rank, world, config["batch_size"])
        state["epoch"] = epoch + 1
        if (epoch + 1) % config["eval_every"] and epoch + 1 < config["epochs"]:
            if rank == 0:
                _log(config, row)
            continue
        stop, ckpt = False, None
        if rank == 0:
            stop, best_state = _evaluate(w, row, state, best_state, epoch, config)
            _log(config, row)
            ckpt = _checkpoint(w, state, best_state)
        ray.train.report({**row, **state}, checkpoint=ckpt)
        if ckpt is not None:  # report has copied it into the run's storage: the local copy goes
            shutil.rmtree(ckpt.path, ignore_errors=True)  # (else one per evaluation fills /tmp)
        if _stop_together(stop, world):
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


def _worker_state(config: dict) -> _Worker:
    import ray.train.torch

    from metamodal.data import load_dataset
    from metamodal.data.missing import Missingness
    from metamodal.data.splits import Split
    from metamodal.models import ZOO
    from metamodal.train.data import attach_features, build_model_data, content_modalities

    ds = attach_features(load_dataset(config["dataset"]), config["data"]["features"])
    split = Split.load(config["split_dir"], ds)
    miss = Missingness.load(config["split_dir"]) if config["missing_on"] else None
    names = content_modalities(ds, config["data"]["modalities"])
    data, _ = build_model_data(ds, split, names, miss, config["data"]["normalise"])
    cls = ZOO[config["model"]]
    torch.manual_seed(config["seed"])
    model = ray.train.torch.prepare_model(cls(data, cls.Params(**config["params"])))
    core = model.module if hasattr(model, "module") else model
    # fused Adam: one kernel over all parameters
    opt = torch.optim.Adam(core.parameters(), lr=config["lr"], weight_decay=config["weight_decay"],
                           fused=True)  # fmt: skip
    return _Worker(ds, split, miss, data, model, core, opt, ray.train.torch.get_device())


def _resume(core, opt, rank: int, config: dict) -> tuple[dict, dict | None]:
    """(loop state, best weights): fresh, or from the checkpoint Ray Train hands a restarted
    worker group. Rank 0 trims the metrics log to one row per epoch."""
    import ray.train

    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad": 0, "resumed_from": []}
    best_state = None  # rank 0 keeps the best weights in memory; every checkpoint carries them
    ckpt = ray.train.get_checkpoint()
    if ckpt:  # resumed after a failure: carry on from the last evaluation
        with ckpt.as_directory() as d:
            saved = torch.load(Path(d) / "last.pt", weights_only=True)
            core.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            best_state = torch.load(Path(d) / "best.pt", weights_only=True)
            state = json.loads((Path(d) / "state.json").read_text())
        state.setdefault("resumed_from", []).append(state["epoch"])
    if rank == 0:  # the log keeps one row per epoch: drop what a lost attempt wrote later
        dropped = _trim_log(Path(config["out"]) / "metrics.jsonl", state["epoch"])
        if ckpt:
            print(f"resumed from the checkpoint of epoch {state['epoch']}", flush=True)
        elif dropped:  # a worker died before the controller had registered any checkpoint
            print("restarted from epoch 1: no checkpoint was registered before the failure", flush=True)
    return state, best_state


def _train_epoch(w: _Worker, sampler, epoch: int, rank: int, world: int, bs: int) -> dict:
    core, model, opt, device = w.core, w.model, w.opt, w.device
    core.train()
    core.set_epoch(epoch)
    t0 = time.perf_counter()
    u, p, n = (torch.from_numpy(a) for a in sampler.epoch(epoch, rank, world))
    losses = []
    for s in range(0, len(u), bs):
        sl = slice(s, s + bs)
        loss = model(u[sl].to(device), p[sl].to(device), n[sl].to(device))  # DDP syncs
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_seconds": time.perf_counter() - t0}


def _evaluate(w: _Worker, row: dict, state: dict, best_state, epoch: int, config: dict):
    """Rank 0 scores validation into ``row``; (stop early, best weights)."""
    from metamodal.eval.protocol import evaluate_split

    t1 = time.perf_counter()
    res = evaluate_split(w.core.scorer(), w.ds, w.split, "valid", w.miss, slices=False,
                         ks=(10, 20))  # fmt: skip
    row.update({f"valid_{k}": v for k, v in res.metrics.items()})
    row["eval_seconds"] = time.perf_counter() - t1
    if res.metrics[config["valid_metric"]] > state["best"]:
        state.update(best=res.metrics[config["valid_metric"]], best_epoch=epoch + 1, bad=0)
        best_state = {k: v.detach().cpu().clone() for k, v in w.core.state_dict().items()}
    else:
        state["bad"] += 1
    return state["bad"] >= config["patience"], best_state


def _checkpoint(w: _Worker, state: dict, best_state):
    import ray.train

    d = tempfile.mkdtemp()
    torch.save({"model": w.core.state_dict(), "opt": w.opt.state_dict()}, Path(d) / "last.pt")
    torch.save(best_state, Path(d) / "best.pt")
    (Path(d) / "state.json").write_text(json.dumps(state))
    return ray.train.Checkpoint.from_directory(d)


def _row_epoch(line: str) -> float:
    """A metrics row's epoch; a line a killed process left half-written counts as past any."""
    try:
        return json.loads(line)["epoch"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


def _trim_log(log: Path, epoch: int) -> int:
    """Keep the rows up to ``epoch`` (atomically); how many were dropped."""
    lines = log.read_text().splitlines() if log.is_file() else []
    rows = [r for r in lines if _row_epoch(r) <= epoch]
    if len(rows) != len(lines):
        tmp = log.with_suffix(".tmp")
        tmp.write_text("".join(r + "\n" for r in rows))
        tmp.replace(log)
    return len(lines) - len(rows)


def _log(config: dict, row: dict) -> None:
    with open(Path(config["out"]) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    valid = row.get(f"valid_{config['valid_metric']}")
    print(
        f"{config['model']} epoch {row['epoch']:>4}  loss {row['loss']:.4f}  "
        f"{row['train_seconds']:.2f} s"
        + (f"  valid {config['valid_metric']} {valid:.4f}" if valid is not None else ""),
        flush=True,
    )
