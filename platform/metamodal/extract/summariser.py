"""The reward-tuned keyword summariser (MMSRARec's): GRPO (trl) on Ray Train + DeepSpeed ZeRO-2
over the summariser LM with LoRA, rewarded for keywords that keep the item's information,
let the item be found again among its neighbours, and stay short (``keyword_reward``). The
tuned LM is saved merged, as a plain checkpoint ``metamodal keywords --llm DIR`` reads; the
three reward terms are measured before and after on held-out items it never trained on.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metamodal.extract.keyword_reward import embed_texts, keyword_words, reward, reward_terms
from metamodal.extract.keywords import KeywordWriter, prompts_for
from metamodal.extract.options import SummariserConfig
from metamodal.harness import (
    RunSpec,
    Worker,
    copy_from_checkpoint,
    fit,
    without_cpu_shm_collectives,
)
from metamodal.rundir import write_json


@dataclass(frozen=True)
class SummariserJob:
    cfg: SummariserConfig
    prompts: list[str]
    items: np.ndarray  # row → item index
    text_emb: np.ndarray  # [n_items, d] MiniLM of the full texts (zeros where none)
    hood: np.ndarray  # [n_items, NEIGHBOURS + 1]: the item, then its nearest items by text


def _deepspeed(stage: int) -> dict:
    return {"zero_optimization": {"stage": stage}, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "zero_allow_untested_optimizer": True,
            "bf16": {"enabled": "auto"}}  # fmt: skip


def _reward_fn(job: SummariserJob, log):
    from metamodal.extract.encoders import Encoder, EncoderSpec
    from metamodal.extract.keywords import parse_keywords

    minilm = Encoder(EncoderSpec("minilm", "text"))

    def fn(prompts, completions, row, **_):
        words = [", ".join(parse_keywords(c if isinstance(c, str) else c[0]["content"], 5)) for c in completions]
        emb = embed_texts(minilm, words, np.flatnonzero([bool(w) for w in words]), len(words))
        items = job.items[np.asarray(row)]
        t = reward_terms(emb, items, np.array([keyword_words(w) for w in words]), job.text_emb, job.hood)
        r = reward(t, job.cfg.length_cost)
        r[[not w for w in words]] = -1.0  # no keyword at all: the worst answer
        log({k: float(v.mean()) for k, v in t.items()} | {"reward": float(r.mean())})
        return r.tolist()

    return fn


def summariser_steps(job: SummariserJob, w: Worker) -> None:
    """GRPO on this worker (the Trainer joins Ray Train's process group: DeepSpeed ZeRO when
    there are several workers or a GPU); rank 0 saves the merged summariser."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    from metamodal.llm import load_model, load_tokenizer, materialise, with_lora

    cfg = job.cfg
    torch.manual_seed(cfg.seed)
    src = materialise(cfg.model)
    tok, net = load_tokenizer(src), with_lora(load_model(src), cfg.lora_r, 2 * cfg.lora_r, cfg.lora_layers,
                                                ["q_proj", "k_proj", "v_proj", "o_proj"])  # fmt: skip
    fn = _reward_fn(job, lambda row: w.log({"stage": "grpo_reward", **row}))

    class Log(TrainerCallback):
        """The metrics log, and one readable line a step in place of the Trainer's dict dumps."""

        def on_log(self, args, state, control, logs=None, **kw):
            row = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
            w.log({"stage": "grpo", "step": state.global_step, **row})
            if w.chief and "reward" in row:
                print(f"grpo step {state.global_step}/{state.max_steps}  reward {row['reward']:.3f}  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip

    if not w.use_gpu and w.world > 1:
        without_cpu_shm_collectives()
    per_device = max(cfg.num_generations, cfg.prompts_per_step * cfg.num_generations // w.world)
    per_device -= per_device % cfg.num_generations
    out = Path(tempfile.mkdtemp())
    args = GRPOConfig(
        output_dir=str(out / "grpo"), max_steps=cfg.steps, per_device_train_batch_size=per_device,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_new_tokens,
        learning_rate=cfg.lr, beta=cfg.beta, temperature=cfg.temperature, logging_steps=1,
        gradient_checkpointing=False, save_strategy="no", report_to=[], use_cpu=not w.use_gpu,
        bf16=bool(w.use_gpu and torch.cuda.is_bf16_supported()), seed=cfg.seed, use_vllm=False,
        deepspeed=_deepspeed(cfg.zero_stage) if w.world > 1 or w.use_gpu else None,
        remove_unused_columns=False,
    )  # fmt: skip
    data = Dataset.from_list([{"prompt": p, "row": i} for i, p in enumerate(job.prompts)])
    trainer = GRPOTrainer(model=net, reward_funcs=[fn], args=args, train_dataset=data,
                          processing_class=tok, callbacks=[Log()])  # fmt: skip
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    t0 = time.perf_counter()
    trainer.train()
    files = None
    if w.chief:
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        model.merge_and_unload().save_pretrained(out / "summariser")
        tok.save_pretrained(out / "summariser")
        w.log({"stage": "done", "seconds": time.perf_counter() - t0})
        files = {"summariser": out / "summariser"}
    w.report({"done": 1}, files)
    shutil.rmtree(out, ignore_errors=True)


def tune_summariser(catalog: str, out: str | Path, cfg: SummariserConfig, fmt: str | None = None) -> dict:
    """Train; then the reward terms before/after on the held-out items; ``out/summariser`` and
    ``out/report.json``."""
    from metamodal.data import load_dataset
    from metamodal.data.modalities import has_text
    from metamodal.extract.encoders import Encoder, EncoderSpec
    from metamodal.extract.keyword_reward import NEIGHBOURS, embed_texts, neighbourhoods
    from metamodal.llm import load_tokenizer, materialise

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(catalog, fmt)
    texts = ds.modalities["text"].texts
    have = np.array([i for i, t in enumerate(texts) if has_text(t)])
    if len(have) < cfg.items + cfg.holdout:
        raise ValueError(f"{catalog}: {len(have)} items with text, fewer than items + holdout = {cfg.items + cfg.holdout}")
    minilm = Encoder(EncoderSpec("minilm", "text"))
    text_emb = embed_texts(minilm, texts, have, ds.n_items)
    pick = np.random.default_rng([cfg.seed, 31]).permutation(have)
    train, hold = pick[: cfg.items], pick[cfg.items : cfg.items + cfg.holdout]
    hood = neighbourhoods(text_emb, have, min(NEIGHBOURS, len(have) - 1))
    tok = load_tokenizer(materialise(cfg.model))
    job = SummariserJob(cfg, prompts_for(tok, [texts[i] for i in train]), train, text_emb, hood)
    t0 = time.perf_counter()
    spec = RunSpec(name=f"summariser-seed{cfg.seed}", out=out, workers=cfg.workers, use_gpu=cfg.use_gpu)
    copy_from_checkpoint(fit(summariser_steps, job, spec), ["summariser"], out)
    res = {"train_items": len(train), "holdout_items": len(hold), "steps": cfg.steps,
           "train_seconds": time.perf_counter() - t0}  # fmt: skip
    for name, model in (("before", cfg.model), ("after", str(out / "summariser"))):
        words = [", ".join(w) for w in KeywordWriter(model).summarise([texts[i] for i in hold])]
        said = np.flatnonzero([bool(w) for w in words])
        emb = embed_texts(minilm, words, said, len(words))
        t = reward_terms(emb, hold, np.array([keyword_words(w) for w in words]), text_emb, hood)
        res[name] = {k: float(v.mean()) for k, v in t.items()} | {"reward": float(reward(t, cfg.length_cost).mean()),
                                                                  "empty": int(len(words) - len(said))}  # fmt: skip
    write_json(out / "report.json", res, indent=1)
    (out / "report.md").write_text(report_markdown(res, catalog))
    return res


def report_markdown(res: dict, catalog: str | Path) -> str:
    """The three reward terms before and after tuning, on the held-out items."""
    rows = [f"| {k} | {res['before'][k]:.4f} | {res['after'][k]:.4f} | {res['after'][k] - res['before'][k]:+.4f} |"
            for k in ("kept", "found", "length", "reward", "empty")]  # fmt: skip
    return "\n".join([
        f"# Keyword summariser, reward-tuned with GRPO on {Path(catalog).name}", "",
        f"{res['steps']} steps on {res['train_items']} training items ({res['train_seconds'] / 60:.1f} min); "
        f"terms measured with greedy decoding on {res['holdout_items']} held-out items "
        "(kept: MiniLM similarity of the keywords to the full text; found: the item retrieved back "
        "from its keywords among its text neighbours; length: keyword words; reward = kept + found "
        "- length_cost x length, -1 for no keyword).", "",
        "| term | before | after | change |", "|---|---|---|---|", *rows, ""])  # fmt: skip
