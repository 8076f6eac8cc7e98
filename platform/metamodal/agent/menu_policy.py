"""Training MMA's router (``menu_net``) on Ray Train, DeepSpeed ZeRO-2 (the CPU accelerator over
gloo here, GPUs when present): each worker caches its shard's frozen-trunk states, then two
stages over the full-information reward table: a warm start on soft targets (cross-entropy to
q), then the exact expected-reward policy gradient over the whole menu with a KL to the warm
start.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metamodal.agent.menu_net import (
    MenuNet,
    MenuPolicyConfig,
    build_menu_net,
    stage_loss,
    trunk_dtype_name,
    unwrapped,
    warm_reference,
)
from metamodal.harness import (
    RunSpec,
    Worker,
    copy_from_checkpoint,
    fit,
    optimiser_step,
    zero_optimiser,
)
from metamodal.rundir import write_json
from metamodal.runlog import read_metrics


def _epochs(mn: MenuNet, cfg: MenuPolicyConfig, rows: dict, states: list[torch.Tensor], stage: str,
            epochs: int, lr: float, w: Worker) -> None:  # fmt: skip
    """One training stage over this rank's rows (``stage_loss``: ``bc`` or ``rl``)."""
    t0 = time.perf_counter()
    engine, opt = zero_optimiser(mn.net, lr, w, cfg.zero_stage, cfg.batch)
    w.log({"stage": f"{stage}_init", "seconds": time.perf_counter() - t0})
    rng = np.random.default_rng([cfg.seed, w.rank, len(stage)])
    mn.net.train()
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(len(states))
        for s in range(0, len(order) - cfg.batch + 1 if len(order) >= cfg.batch else 1, cfg.batch):
            loss = stage_loss(mn, states, rows, order[s : s + cfg.batch], stage, cfg.beta)
            optimiser_step(engine, opt, loss)
            step += 1
            w.log({"stage": stage, "epoch": epoch, "step": step, "loss": float(loss.detach()),
                   "seconds": time.perf_counter() - t0})


@dataclass(frozen=True)
class PolicyJob:
    """What each worker needs: the trainer's config and the rows (prompts, menu sizes, soft
    targets, full-information rewards and their scale)."""

    cfg: MenuPolicyConfig
    rows: dict


def policy_steps(job: PolicyJob, w: Worker) -> None:
    """The policy's step code for the harness: cache its shard's trunk states, warm start,
    RL; rank 0 saves the adapters."""
    cfg, rows = job.cfg, job.rows
    torch.manual_seed(cfg.seed)
    dtype = trunk_dtype_name(cfg.trunk_dtype, w.device)
    mn = build_menu_net(cfg, rows["q"].shape[1], dtype)
    if w.use_gpu:
        mn.net.to(w.device)
    shard = np.arange(w.rank, len(rows["prompts"]), w.world)
    mine = {k: (v[shard] if isinstance(v, np.ndarray) else v) for k, v in rows.items()}
    t0 = time.perf_counter()
    states = mn.encode([rows["prompts"][i] for i in shard])
    w.log({"stage": "cache", "rows": len(shard), "trunk_dtype": dtype, "seconds": time.perf_counter() - t0})
    _epochs(mn, cfg, mine, states, "bc", cfg.bc_epochs, cfg.bc_lr, w)
    saved = Path(tempfile.mkdtemp())  # rank 0's node, maybe not the driver's: reported below
    if w.chief:  # the warm start alone: the BC-only ablation
        unwrapped(mn).save_pretrained(saved / "adapter_bc")
    if cfg.rl_epochs:
        mine["ref"] = warm_reference(mn, states, mine["sizes"])
        _epochs(mn, cfg, mine, states, "rl", cfg.rl_epochs, cfg.rl_lr, w)
    files = None
    if w.chief:
        unwrapped(mn).save_pretrained(saved / "adapter")
        w.log({"stage": "done", "seconds": time.perf_counter() - t0})
        files = {"adapter_bc": saved / "adapter_bc", "adapter": saved / "adapter"}
    w.report({"done": 1}, files)
    shutil.rmtree(saved, ignore_errors=True)


def train_menu_policy(
    prompts: list[str], rewards: np.ndarray, sizes: np.ndarray, q: np.ndarray,
    out: str | Path, cfg: MenuPolicyConfig, reward_scale: float | None = None,
    groups: list[str] | None = None, record: dict | None = None,
) -> dict:  # fmt: skip
    """Train on Ray Train; ``rewards``/``q`` [n, letters] (zeros past each row's menu size).
    ``reward_scale`` multiplies the rewards in the RL stage (default: one over their spread).
    ``groups``: each row's bucket-only prompt, for the summary's ``bucket_floor``. ``record``:
    what the caller keeps in ``summary.json`` beside the training's facts (a scorer's mode)."""
    from metamodal.agent.menus import group_floor
    from metamodal.llm import materialise

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    cfg = cfg.model_copy(update={"model": materialise(cfg.model)})
    if reward_scale is None:
        spread = float(np.std(rewards[rewards > 0])) if (rewards > 0).any() else 1.0
        reward_scale = 1.0 / max(spread, 1e-3)
    rows = {"prompts": list(prompts), "rewards": rewards.astype(np.float32),
            "sizes": np.asarray(sizes, np.int64), "q": q.astype(np.float32),
            "ref": q.astype(np.float32), "reward_scale": reward_scale}  # fmt: skip
    spec = RunSpec(name=f"mma-router-seed{cfg.seed}", out=out, workers=cfg.workers,
                   use_gpu=cfg.use_gpu)  # fmt: skip
    t0 = time.perf_counter()
    copy_from_checkpoint(fit(policy_steps, PolicyJob(cfg, rows), spec), ["adapter_bc", "adapter"], out)
    metrics = read_metrics(out / "metrics.jsonl")
    bc = [r["loss"] for r in metrics if r["stage"] == "bc"]
    dtype = next(r["trunk_dtype"] for r in metrics if r["stage"] == "cache")
    qn = q[q.sum(1) > 0]
    summary = {"rows": len(prompts), "seconds": time.perf_counter() - t0,
               "bc_loss_first": float(np.mean(bc[:5])), "bc_loss_last": float(np.mean(bc[-10:])),
               "target_entropy": float(-(qn * np.log(np.clip(qn, 1e-12, None))).sum(1).mean()),
               "adapter": str(out / "adapter"), "base_model": cfg.model,
               "depth": cfg.depth, "train_layers": cfg.train_layers, "letters": int(q.shape[1]),
               "answer": cfg.answer, "trunk_dtype": dtype}  # fmt: skip
    if groups is not None:
        summary["bucket_floor"] = group_floor(q, groups)
    summary.update(record or {})
    write_json(out / "summary.json", summary)
    return summary
