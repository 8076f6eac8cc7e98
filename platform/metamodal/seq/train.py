"""SASRec-family training on Ray Train (the platform's harness: DDP over the workers, GPUs when
present): epochs of next-item windows, rank 0's validation (full-ranking NDCG@10) every
``eval_every`` epochs, early stopping, and a checkpoint of the latest and the best weights, so a
restarted worker group carries on from the last evaluation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from metamodal.harness import RunSpec, Worker, fit, read_checkpoint
from metamodal.seq.sasrec import SASRec, SASRecParams

VALID_METRIC = "ndcg@10"


class SeqTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(60, ge=1)
    batch: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    eval_every: int = Field(5, ge=1)
    patience: int = Field(3, ge=1, description="evaluations without a better valid NDCG@10 before stopping")
    workers: int = Field(1, ge=1)
    use_gpu: bool | None = None


@dataclass(frozen=True)
class SeqJob:
    """Everything a worker needs: windows to learn from, the content (empty for ID-only
    SASRec) and the validation rows (padded histories, targets, masked items)."""

    params: SASRecParams
    train: SeqTrainConfig
    seed: int
    n_items: int
    windows: tuple[np.ndarray, np.ndarray]
    content: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray, list[np.ndarray]]


def build(job: SeqJob) -> SASRec:
    torch.manual_seed(job.seed)
    content = {m: torch.from_numpy(x) for m, x in job.content.items()}
    present = {m: torch.from_numpy(x) for m, x in job.present.items()}
    return SASRec(job.n_items, job.params, content or None, present or None)


def valid_score(core: SASRec, job: SeqJob, device: torch.device) -> float:
    from metamodal.eval.sequential import full_metrics

    core.eval()
    x, y, masked = job.valid
    s = np.concatenate([core.scores(torch.from_numpy(x[i : i + 512]).to(device)).cpu().numpy()
                        for i in range(0, len(x), 512)])  # fmt: skip
    core.train()
    return float(full_metrics(s, y, masked)[VALID_METRIC].mean())


def seq_steps(job: SeqJob, w: Worker) -> None:
    t = job.train
    model, core = w.ddp(build(job))
    opt = torch.optim.Adam(core.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    state, best = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad": 0}, None
    saved = w.restore(["last.pt", "best.pt", "state.json"])
    if saved:
        core.load_state_dict(saved["last.pt"]["model"])
        opt.load_state_dict(saved["last.pt"]["opt"])
        best, state = saved["best.pt"], saved["state.json"]
    w.start_log(state["epoch"], resumed=saved is not None)
    xs, ys = (torch.from_numpy(a) for a in job.windows)
    gen = torch.Generator().manual_seed(job.seed * 7919 + w.rank)
    for epoch in range(state["epoch"], t.epochs):
        t0 = time.perf_counter()
        order = np.random.default_rng([job.seed, epoch]).permutation(len(xs))[w.rank :: w.world]
        losses = []
        for s in range(0, len(order), t.batch):
            b = torch.from_numpy(order[s : s + t.batch])
            loss = model(xs[b].to(w.device), ys[b].to(w.device), core.training_hidden(gen) or None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        state["epoch"] = epoch + 1
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_seconds": time.perf_counter() - t0}
        if (epoch + 1) % t.eval_every and epoch + 1 < t.epochs:
            w.log(row)
            continue
        stop, files = False, None
        if w.chief:
            row[f"valid_{VALID_METRIC}"] = v = valid_score(core, job, w.device)
            if v > state["best"]:
                state.update(best=v, best_epoch=epoch + 1, bad=0)
                best = {k: x.detach().cpu().clone() for k, x in core.state_dict().items()}
            else:
                state["bad"] += 1
            stop = state["bad"] >= t.patience
            files = {"last.pt": {"model": core.state_dict(), "opt": opt.state_dict()},
                     "best.pt": best, "state.json": state}  # fmt: skip
            print(f"  epoch {epoch + 1:>3}/{t.epochs}  loss {row['loss']:.4f}  valid NDCG@10 {v:.4f}"
                  f"  ({row['train_seconds']:.1f} s/epoch)", flush=True)  # fmt: skip
        w.log(row)
        w.report({**row, **state}, files)
        if w.agree(stop):
            break


def fit_sequential(job: SeqJob, out: Path, name: str) -> tuple[SASRec, dict]:
    """(the best-on-validation model, its training state) after a Ray Train run in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(name=name, out=out, workers=job.train.workers, use_gpu=job.train.use_gpu)
    got = read_checkpoint(fit(seq_steps, job, spec), ["best.pt", "state.json"])
    model = build(job)
    model.load_state_dict(got["best.pt"])
    model.eval()
    return model, got["state.json"]
