"""CLIP domain alignment on Ray Train: contrastive fine-tuning of an open_clip model on the
catalog's own image–text pairs, optionally with co-interaction weak labels.

No pretrained CLIP weights can be had offline, so the embedded default trains ``mm-tiny-clip``
(a small open_clip architecture, ``clip_configs/``) from random init; ``--init`` fine-tunes any
local checkpoint instead. Two losses:

- the CLIP loss (open_clip's ``ClipLoss``, features gathered across DDP workers) on pairs;
- with ``co_weight > 0``, the guide's "separate encoders + alignment": per-modality projection
  heads map an item's image embedding and a co-consumed item's text embedding into a shared
  space, pulled together by InfoNCE (items bought by the same users as positives).

The epoch kept is the best on validation pairs' image→text Recall@10; zero-shot image→text
Recall@K on held-out test pairs is reported before (the initial weights) and after. The output
``aligned.pt`` (an open_clip state dict) with its ``aligned.json`` sidecar is what
``metamodal extract --image-weights`` takes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metamodal.data import load_dataset
from metamodal.data.splits import Split
from metamodal.extract.align_data import build_pairs, draw_partners
from metamodal.extract.encoders import (
    EncoderSpec,
    clip_pixel_stats,
    image_size,
    normalise_pixels,
    register_clip_configs,
)
from metamodal.extract.options import AlignConfig
from metamodal.harness import (
    RefLine,
    RunSpec,
    Worker,
    fit,
    plot_curves,
    read_checkpoint,
)
from metamodal.rundir import AlignReport, AlignRun, atomic_write
from metamodal.runlog import read_metrics
from metamodal.storage import forget_checkpoints, sync_down, sync_up

KS = (1, 5, 10)


class AlignNet(torch.nn.Module):
    """The CLIP model plus the per-modality heads, one module so DDP sees every parameter."""

    def __init__(self, clip: torch.nn.Module, dim: int, heads: bool) -> None:
        super().__init__()
        self.clip = clip
        self.heads = heads  # without the co-interaction loss the heads would get no gradient
        if heads:
            self.head_image = torch.nn.Linear(dim, dim)
            self.head_text = torch.nn.Linear(dim, dim)

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor, partner_tokens: torch.Tensor):
        img = self.clip.encode_image(pixels, normalize=True)
        if not self.heads:
            txt = self.clip.encode_text(tokens, normalize=True)
            return img, txt, self.clip.logit_scale.exp(), None, None
        txt = self.clip.encode_text(torch.cat([tokens, partner_tokens]), normalize=True)
        txt, partner = txt[: len(tokens)], txt[len(tokens) :]
        return img, txt, self.clip.logit_scale.exp(), self.head_image(img), self.head_text(partner)


def build_clip(arch: str, init: str | None, seed: int, device: str = "cpu") -> torch.nn.Module:
    import open_clip

    register_clip_configs()
    torch.manual_seed(seed)
    return open_clip.create_model(arch, pretrained=init, device=device)


@torch.inference_mode()
def pair_recall(
    clip: torch.nn.Module, pixels: np.ndarray, tokens: np.ndarray, device: str = "cpu"
) -> dict[str, float]:
    """Zero-shot retrieval among the given pairs: image→text and text→image Recall@K."""
    clip.eval()
    img, txt = [], []
    for s in range(0, len(pixels), 256):
        x = normalise_pixels(torch.from_numpy(pixels[s : s + 256]).to(device), clip_pixel_stats(clip.visual))
        img.append(clip.encode_image(x, normalize=True).float().cpu())
        txt.append(
            clip.encode_text(torch.from_numpy(tokens[s : s + 256]).to(device), normalize=True)
            .float()
            .cpu()
        )
    return pair_recall_of(torch.cat(img), torch.cat(txt))


def pair_recall_of(img: torch.Tensor, txt: torch.Tensor) -> dict[str, float]:
    """Image→text and text→image Recall@K of row-aligned pairs of normalised embeddings."""
    sim = img @ txt.T
    out = {}
    for name, m in (("i2t", sim), ("t2i", sim.T)):
        rank = (m > m.diagonal()[:, None]).sum(1)  # how many beat the true partner
        for k in KS:
            out[f"{name}_recall@{k}"] = float((rank < k).float().mean())
    return out


@dataclass(frozen=True)
class AlignJob:
    """What each worker needs: the configuration and the prepared pairs' file."""

    cfg: AlignConfig
    data: str


def align_steps(job: AlignJob, w: Worker) -> None:
    """The alignment's step code for the harness: its shard of each epoch's pairs, DDP, the
    gathered CLIP loss; every epoch checkpoints the latest state (resume) and the best one."""
    from open_clip.loss import ClipLoss

    if not Path(job.data).is_file():  # a node other than the driver's
        sync_down(Path(job.data).parent)
    cfg, data = job.cfg, np.load(job.data)
    train_idx = np.flatnonzero(data["split"] == 0)
    clip = build_clip(cfg.arch, cfg.init, cfg.seed)
    net, core = w.ddp(AlignNet(clip, int(clip.text_projection.shape[1]), cfg.co_weight > 0))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = batch_size_for(len(train_idx), cfg.batch_size, w)
    steps = cfg.epochs * (len(train_idx) // w.world // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps + 1)
    step = _Step(net, clip, opt, sched, ClipLoss(gather_with_grad=w.world > 1, rank=w.rank, world_size=w.world),
                 w.device, cfg.co_weight)  # fmt: skip
    state, best = resume_alignment(w, core, opt, sched)
    for epoch in range(state["epoch"], cfg.epochs):
        w.maybe_fail(epoch, cfg.fail_at_epoch)
        metrics = align_epoch(step, data, train_idx, epoch, bs, cfg.seed, w)
        state["epoch"], files = epoch + 1, None
        if w.chief:
            best = _validate(clip, core, data, metrics, state, best, cfg, str(w.device))
            w.log(metrics)
            files = {"last.pt": {"net": core.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()},
                     "best.pt": best, "state.json": state}  # fmt: skip
        w.report(metrics, files)


def resume_alignment(w: Worker, core: torch.nn.Module, opt: torch.optim.Optimizer,
                     sched=None) -> tuple[dict, dict | None]:  # fmt: skip
    """The last checkpoint's weights and optimiser (and schedule) restored, if there is one;
    the epoch state and the best epoch's weights so far. Starts the worker's log either way."""
    state, best = {"epoch": 0, "best": -1.0, "best_epoch": 0}, None
    saved = w.restore(["last.pt", "best.pt", "state.json"])
    if saved:
        core.load_state_dict(saved["last.pt"]["net"])
        opt.load_state_dict(saved["last.pt"]["opt"])
        if sched is not None:
            sched.load_state_dict(saved["last.pt"]["sched"])
        state, best = saved["state.json"], saved["best.pt"]
    w.start_log(state["epoch"], resumed=saved is not None)
    return state, best


def batch_size_for(pairs: int, wanted: int, w: Worker) -> int:
    """``wanted``, or what each rank's share of the training pairs can fill (every rank steps
    on equal, full batches); too few pairs to train on is an error, not an epoch of nothing."""
    per_rank = pairs // w.world
    if per_rank < 2:
        raise ValueError(f"align: {pairs} training pairs cannot give each of {w.world} workers a batch of 2")
    if per_rank < wanted and w.chief:
        print(f"align: batch size {per_rank} (of {wanted}): {pairs} training pairs over {w.world} workers", flush=True)
    return min(wanted, per_rank)


def align_epoch(step, data, train_idx: np.ndarray, epoch: int, bs: int, seed: int, w: Worker) -> dict:
    """This rank's equal share of the epoch's pairs, in full batches."""
    t0 = time.perf_counter()
    step.net.train()
    rng = np.random.default_rng(seed * 1000 + epoch)
    order = rng.permutation(train_idx)
    per_rank = len(order) // w.world
    mine = order[w.rank * per_rank : (w.rank + 1) * per_rank]
    losses = [step(data, mine[s : s + bs], rng) for s in range(0, len(mine) - bs + 1, bs)]
    return {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0}


@dataclass
class _Step:
    """One optimiser step on a batch of pairs: the CLIP loss, plus the co-interaction term
    (an item's image against a co-interacted item's text) when ``co_weight`` > 0."""

    net: torch.nn.Module
    clip: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: object
    clip_loss: torch.nn.Module
    device: torch.device
    co_weight: float

    def __call__(self, data, b: np.ndarray, rng: np.random.Generator) -> float:
        pick, has = draw_partners(data["partners"], b, rng)
        x = normalise_pixels(torch.from_numpy(data["pixels"][b]).to(self.device), clip_pixel_stats(self.clip.visual))
        tok = torch.from_numpy(data["tokens"][b]).to(self.device)
        ptok = torch.from_numpy(data["tokens"][pick]).to(self.device)
        img, txt, scale, h_img, h_txt = self.net(x, tok, ptok)
        loss = self.clip_loss(img, txt, scale)
        if self.co_weight > 0 and has.any():
            m = torch.from_numpy(has).to(self.device)
            a, p = F.normalize(h_img[m], dim=-1), F.normalize(h_txt[m], dim=-1)
            logits = scale * a @ p.T
            target = torch.arange(len(a), device=self.device)
            co = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            loss = loss + self.co_weight * co
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, np.log(100))
        return float(loss.detach())


def _validate(clip, core, data, metrics: dict, state: dict, best, cfg: AlignConfig, device: str):
    """Rank 0: validation recall into ``metrics``; the best weights so far (clip and heads)."""
    valid = data["split"] == 1
    r = pair_recall(clip, data["pixels"][valid], data["tokens"][valid], device)
    metrics.update({f"valid_{k}": v for k, v in r.items()})
    print(f"align epoch {metrics['epoch']}/{cfg.epochs}  loss {metrics['loss']:.3f}  "
          f"valid i2t R@10 {r['i2t_recall@10']:.3f}  ({metrics['seconds']:.1f} s)", flush=True)  # fmt: skip
    if r["i2t_recall@10"] <= state["best"]:
        return best
    state.update(best=r["i2t_recall@10"], best_epoch=metrics["epoch"])
    snap = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
    return {"clip": {k[len("clip."):]: v for k, v in snap.items() if k.startswith("clip.")},
            "heads": {k: v for k, v in snap.items() if k.startswith("head_")}}  # fmt: skip


def run_align(
    catalog: str | Path,
    out: str | Path,
    cfg: AlignConfig | None = None,
    fmt: str | None = None,
    split: str | Path | None = None,
    overwrite: bool = False,
) -> AlignReport:
    """Prepare pairs, measure the initial weights, train on Ray Train, keep the best epoch.
    ``split``: a saved split, whose train part alone gives the co-interactions."""
    cfg = cfg or AlignConfig()
    ds = load_dataset(catalog, fmt)
    interactions_idx = None if split is None else Split.load(split, ds).train
    run = AlignRun(Path(out).resolve())
    sync_down(run.path)  # a run begun elsewhere resumes here
    pairs_from = None if interactions_idx is None else hashlib.sha1(np.asarray(interactions_idx).tobytes()).hexdigest()
    claimed = run.claim({**cfg.model_dump(), "catalog": str(Path(catalog).resolve()), "interactions": pairs_from},
                        overwrite)  # fmt: skip
    out = run.path
    if claimed == "same" and (out / "aligned.json").is_file():  # written last
        print(f"align: kept (this configuration finished in {out})", flush=True)
        return run.report()  # its Ray Train run would only restore its last checkpoint
    t0 = time.perf_counter()
    data_path, stats = _prepare_pairs(ds, cfg, out, interactions_idx)
    data = np.load(data_path)
    test = data["split"] == 2
    before = pair_recall(build_clip(cfg.arch, cfg.init, cfg.seed), data["pixels"][test], data["tokens"][test])
    if claimed != "same":  # the same configuration resumes from its last checkpoint
        run.metrics_file.unlink(missing_ok=True)
        forget_checkpoints(out)
    sync_up(out)  # workers on other nodes read the pairs from there
    spec = RunSpec(name="align", out=out, workers=cfg.workers, use_gpu=cfg.use_gpu,
                   max_failures=cfg.max_failures, metrics_file=run.metrics_file.name)  # fmt: skip
    best = read_checkpoint(fit(align_steps, AlignJob(cfg, str(data_path)), spec), ["best.pt"])["best.pt"]
    atomic_write(run.checkpoint, lambda tmp: torch.save(best["clip"], tmp))
    atomic_write(out / "aligned_heads.pt", lambda tmp: torch.save(best["heads"], tmp))
    aligned = build_clip(cfg.arch, str(run.checkpoint), cfg.seed)
    after = pair_recall(aligned, data["pixels"][test], data["tokens"][test])
    curve = read_metrics(run.metrics_file)
    report = AlignReport(
        arch=cfg.arch, config=cfg.model_dump(), pairs=asdict(stats), random_init=cfg.init is None,
        test_before=before, test_after=after,
        best_epoch=max(curve, key=lambda m: m["valid_i2t_recall@10"])["epoch"],
        epochs=curve, checkpoint=str(run.checkpoint), seconds=time.perf_counter() - t0,
    )  # fmt: skip
    run.write_report(report)
    plot_curves(curve, [("loss", "training loss"), ("valid_i2t_recall@10", "image→text Recall@10")],
                out / "align_curve.png",
                lines=[RefLine("test, before", 1, before["i2t_recall@10"], ":", "grey"),
                       RefLine("test, after", 1, after["i2t_recall@10"])])  # fmt: skip
    print(
        f"align: test image->text Recall@10 {before['i2t_recall@10']:.3f} before -> "
        f"{after['i2t_recall@10']:.3f} after (best epoch {report.best_epoch}); "
        f"checkpoint {run.checkpoint}  ({report.seconds:.0f} s)",
        flush=True,
    )
    sync_up(out)
    return report


def _prepare_pairs(ds, cfg: AlignConfig, out: Path, interactions_idx):
    """(``pairs.npz``: pixels and tokens of image-text pairs split train/valid/test, counts)."""
    import open_clip

    register_clip_configs()
    size = image_size(EncoderSpec("open_clip_image", "x", arch=cfg.arch))
    data_path = out / "pairs.npz"
    stats = build_pairs(ds, data_path, size, open_clip.get_tokenizer(cfg.arch), cfg.valid_frac,
                        cfg.test_frac, cfg.neighbours, cfg.seed, interactions_idx, cfg.max_pairs)  # fmt: skip
    print(f"align: {stats.pairs} image-text pairs (train {stats.train}, valid {stats.valid}, "
          f"test {stats.test}); skipped {stats.skipped}", flush=True)  # fmt: skip
    return data_path, stats
