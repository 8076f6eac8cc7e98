"""Policy training on Ray Train: a behaviour-cloning warm start, then GRPO (trl) under DeepSpeed.

- Warm start: for every distinct prompt among the training steps, the action with the best mean
  reward over the episodes that share it (search over tool subsets and weight ratios) is the
  target completion; a few epochs of completion-only cross-entropy on the LoRA weights, on
  rank 0, whose adapter is then broadcast so the replicas start GRPO identical.
- GRPO: ``GRPOTrainer`` with the environment's reward (NDCG@10 of the fused ranking − a cost per
  call + a format term) over a dataset drawn by the balanced missingness-task sampler.
  DeepSpeed ZeRO-2 on GPUs; on CPU DeepSpeed's CPU accelerator over gloo with a plain torch
  AdamW (STACK_NOTES: its own Adam JIT-compiles for ~45 s), and ``use_cpu=True`` — without it
  DDP on a CPU host silently trains each worker alone.

Writes ``DIR/adapter`` (the LoRA weights), ``DIR/metrics.jsonl`` (one row per logged step, both
stages) and wandb's offline run under ``DIR/wandb``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from metamodal.agent.actions import chat, render_action
from metamodal.agent.env import AgentEnv, Step, best_action


class PolicyTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m-instruct"
    lora_r: int = 16
    lora_layers: int = 8
    bc_epochs: int = 16
    bc_lr: float = 2e-3
    bc_batch: int = 8
    grpo_steps: int = 30
    prompts_per_step: int = 2
    num_generations: int = 4
    lr: float = 2e-5
    beta: float = 0.0  # no reference model: a forward pass fewer per step on CPU
    temperature: float = 1.0
    max_new_tokens: int = 48
    workers: int = 2
    use_gpu: bool | None = None
    zero_stage: int = 2
    threads: int | None = None
    seed: int = 0
    wandb: bool = True


def bc_pairs(
    env: AgentEnv, steps: list[Step], prior: dict[str, float] | None = None
) -> list[tuple[str, str, float]]:
    """(prompt, target completion, its mean reward) per distinct prompt. Targets are searched
    over every episode with the same task and usable tools (prompts also differ by history
    size), so each rests on more episodes; ``prior`` guards the search (``best_action``)."""
    pooled: dict[tuple, list[Step]] = {}
    prompts: dict[str, tuple] = {}
    for s in steps:
        key = (s.ep.task, tuple(s.usable))
        pooled.setdefault(key, []).append(s)
        prompts[s.prompt] = key
    targets = {k: best_action(env, g, prior) for k, g in pooled.items()}
    return [(p, render_action(targets[k][0].calls, targets[k][0].weights), targets[k][1])
            for p, k in sorted(prompts.items())]  # fmt: skip


def behaviour_clone(net, tok, pairs: list[tuple[str, str, float]], cfg: PolicyTrainConfig, log):
    from metamodal.agent.policy import prompt_text

    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.bc_lr)
    net.train()
    step = 0
    for epoch in range(cfg.bc_epochs):
        order = rng.permutation(len(pairs))
        for s in range(0, len(order), cfg.bc_batch):
            batch = [pairs[i] for i in order[s : s + cfg.bc_batch]]
            full = [prompt_text(tok, p) + c + tok.eos_token for p, c, _ in batch]
            n_comp = [len(tok(c + tok.eos_token, add_special_tokens=False).input_ids)
                      for _, c, _ in batch]  # fmt: skip
            enc = tok(full, return_tensors="pt", padding=True).to(net.device)  # left-padded
            keep = max(n_comp) + 1  # completions end every row: logits for the tail only
            logits = net(**enc, logits_to_keep=keep).logits[:, :-1]
            target = enc.input_ids[:, -keep + 1 :].clone()
            for r, n in enumerate(n_comp):  # loss on the completion tokens only
                target[r, : target.shape[1] - n] = -100
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            log({"stage": "bc", "epoch": epoch, "step": step, "loss": float(loss.detach())})


def deepspeed_config(stage: int) -> dict:
    return {
        "zero_optimization": {"stage": stage},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": "auto"},
    }


def policy_worker(config: dict) -> None:
    """One Ray Train worker: warm start, GRPO, then rank 0 saves the adapter and reports it."""
    import ray.train
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from metamodal.agent.policy import PolicySpec, load_model, load_tokenizer, with_lora
    from metamodal.train.loop import quiet_ray_train_logs

    os.environ.update(config["env_vars"])  # before transformers imports DeepSpeed
    quiet_ray_train_logs()
    cfg = PolicyTrainConfig(**config["cfg"])
    env: AgentEnv = config["env"]
    steps: list[Step] = config["steps"]
    out = Path(config["out"])
    rank = ray.train.get_context().get_world_rank()
    use_gpu = torch.cuda.is_available() and cfg.use_gpu is not False
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rows: list[dict] = []

    def log(row: dict) -> None:
        if rank == 0:
            rows.append(row)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    tok = load_tokenizer(cfg.model)
    net = with_lora(
        load_model(cfg.model),
        PolicySpec(model=cfg.model, lora_r=cfg.lora_r, lora_layers=cfg.lora_layers),
    )
    if use_gpu:
        net = net.to(ray.train.torch.get_device())
    if rank == 0:
        # the other ranks wait in the broadcast below: on CPU rank 0 borrows their threads
        if not use_gpu and cfg.threads:
            torch.set_num_threads(cfg.threads * config["world"])
        behaviour_clone(net, tok, config["bc_pairs"], cfg, log)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
    if config["world"] > 1:  # the other replicas take rank 0's warm-started adapter
        import torch.distributed as dist

        for p in net.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, src=0)

    def reward_fn(prompts, completions, step_idx, log_metric=None, **_):
        vals, ndcgs, calls, ok = [], [], [], []
        for c, i in zip(completions, step_idx, strict=True):
            text = c[0]["content"] if isinstance(c, list) else str(c)
            r, n, a = env.reward(steps[i], text)
            vals.append(r)
            ndcgs.append(n)
            calls.append(len(a.calls))
            ok.append(a.well_formed)
        if log_metric is not None:
            log_metric("ndcg@10", float(np.mean(ndcgs)))
            log_metric("calls", float(np.mean(calls)))
            log_metric("well_formed", float(np.mean(ok)))
        return vals

    data = Dataset.from_list(
        [{"prompt": chat(s.prompt), "step_idx": i} for i, s in enumerate(steps)]
    )

    class Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            log({"stage": "grpo", "step": state.global_step, **(logs or {})})

    per_device = cfg.prompts_per_step * cfg.num_generations // max(1, config["world"])
    per_device = max(cfg.num_generations, per_device - per_device % cfg.num_generations)
    args = GRPOConfig(
        output_dir=str(out / "grpo"),
        max_steps=cfg.grpo_steps,
        per_device_train_batch_size=per_device,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        learning_rate=cfg.lr,
        beta=cfg.beta,
        temperature=cfg.temperature,
        logging_steps=1,
        gradient_checkpointing=False,  # trl turns it on; a 135M policy fits, recompute costs
        save_strategy="steps",  # resumable checkpoints (the adapter and optimiser state)
        save_steps=max(5, cfg.grpo_steps // 3),
        save_total_limit=1,
        report_to=["wandb"] if cfg.wandb and rank == 0 else [],
        run_name=f"mma-grpo-seed{cfg.seed}",
        use_cpu=not use_gpu,
        bf16=use_gpu and torch.cuda.is_bf16_supported(),
        deepspeed=deepspeed_config(cfg.zero_stage) if config["world"] > 1 or use_gpu else None,
        seed=cfg.seed,
        use_vllm=False,
        shuffle_dataset=False,  # the balanced sampler already ordered it
        remove_unused_columns=False,
    )
    trainer = GRPOTrainer(
        model=net,
        reward_funcs=[reward_fn],
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[Log()],
    )
    t0 = time.perf_counter()
    trainer.train()
    if rank == 0:
        model = trainer.model
        model = model.module if hasattr(model, "module") else model
        model.save_pretrained(out / "adapter")
        log({"stage": "done", "grpo_seconds": time.perf_counter() - t0})
    ray.train.report({"done": 1})


def train_policy(
    env: AgentEnv,
    steps: list[Step],
    out: str | Path,
    cfg: PolicyTrainConfig,
    prior: dict[str, float] | None = None,
) -> dict:
    """Run the warm start and GRPO on Ray Train; returns a summary (BC targets, timings).
    ``prior``: RuleRouter-Fuse's weights, the fallback of the warm start's target search."""
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    out = Path(out).resolve()  # Ray Train storage wants an absolute path
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_DIR", str(out))
    from metamodal.agent.policy import materialise
    from metamodal.train.runner import worker_scaling

    cfg = cfg.model_copy(update={"model": materialise(cfg.model)})
    t0 = time.perf_counter()
    pairs = bc_pairs(env, steps, prior)
    search_s = time.perf_counter() - t0
    use_gpu, scaling, share = worker_scaling(cfg.workers, cfg.use_gpu)
    threads = cfg.threads or int(share)
    env_vars = {"WANDB_MODE": os.environ["WANDB_MODE"], "WANDB_DIR": str(out)}
    if not use_gpu:
        env_vars["DS_ACCELERATOR"] = "cpu"
    trainer = TorchTrainer(
        policy_worker,
        train_loop_config={
            "cfg": cfg.model_copy(update={"threads": threads, "use_gpu": use_gpu}).model_dump(),
            "env": env,
            "steps": steps,
            "bc_pairs": pairs,
            "out": str(out),
            "world": cfg.workers,
            "env_vars": env_vars,
        },
        scaling_config=scaling,
        run_config=RunConfig(
            name=f"mma-policy-seed{cfg.seed}",
            storage_path=str(out / "ray_results"),
        ),
    )
    trainer.fit()
    summary = {
        "bc_targets": len(pairs),
        "bc_pairs": pairs,
        "bc_mean_reward": float(np.mean([r for _, _, r in pairs])) if pairs else None,
        "bc_search_seconds": search_s,
        "seconds": time.perf_counter() - t0,
        "adapter": str(out / "adapter"),
        "base_model": cfg.model,
    }
    (out / "summary.json").write_text(json.dumps(summary, default=float))  # what ``mma run`` reuses
    return summary
