"""The guide's "separate encoders + alignment": the pretrained text (MiniLM) and image
(EfficientNet-Lite) encoders stay frozen — an extraction run's features are their output — and
two projection heads map them into one shared space, trained on Ray Train with the CLIP loss on
the catalogue's image–text pairs and, with ``co_weight > 0``, the co-interaction weak labels (an
item's image against a co-consumed item's text).

Why beside the from-scratch CLIP (``align.py``): no pretrained CLIP weights exist offline, and a
tiny CLIP trained on a few thousand pairs must learn to see and to read as well as to align;
here both towers already do, and only the map between them is learnt. Zero-shot image→text
Recall@K on held-out test pairs is reported before (the heads' random start) and after (the
epoch best on validation pairs).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metamodal.data import Dataset, load_dataset
from metamodal.data.loaders.embeddings import load_embeddings
from metamodal.data.modalities import FeatureModality
from metamodal.data.splits import Split
from metamodal.extract.align import align_epoch, batch_size_for, pair_recall_of, resume_alignment
from metamodal.extract.align_data import PairStats, co_partners, draw_partners
from metamodal.extract.options import AlignConfig
from metamodal.extract.shared_space import Heads, load_heads
from metamodal.harness import RefLine, RunSpec, Worker, fit, plot_curves, read_checkpoint
from metamodal.rundir import AlignReport, HeadsRun, atomic_write
from metamodal.runlog import read_metrics
from metamodal.storage import forget_checkpoints, sync_down, sync_up


def frozen_features(ds: Dataset, features: str | Path | None) -> tuple[FeatureModality, FeatureModality]:
    """The text and image feature modalities (exactly one of each kind) of the extraction run
    ``features``, or, without one, the catalogue's own precomputed features."""
    source = load_embeddings(features, ds) if features is not None else ds.modalities
    mods = [m for m in source.values() if isinstance(m, FeatureModality)]
    features = features if features is not None else ds.path
    picked = []
    for kind in ("text", "image"):
        found = [m for m in mods if m.kind == kind]
        if len(found) != 1:
            names = [m.name for m in mods]
            raise ValueError(f"{features}: heads alignment needs exactly one {kind} feature modality, "
                             f"found {[m.name for m in found]} among {names}")  # fmt: skip
        picked.append(found[0])
    return picked[0], picked[1]


def build_feature_pairs(ds: Dataset, features: str | Path | None, path: Path, cfg: AlignConfig,
                        interactions_idx: np.ndarray | None) -> PairStats:  # fmt: skip
    """Items with both features present, split train / valid / test by item (seeded), with
    their co-interaction partners among the train items; written to ``path``."""
    text, image = frozen_features(ds, features)
    both = text.present & image.present
    skipped = {k: int(v) for k, v in (("no_text", (~text.present).sum()),
                                      ("no_image", (text.present & ~image.present).sum())) if v}  # fmt: skip
    items = np.flatnonzero(both)
    if len(items) < 20:
        raise ValueError(f"{features}: only {len(items)} items have both text and image features")
    if cfg.max_pairs is not None and len(items) > cfg.max_pairs:
        skipped["beyond_max_pairs"] = len(items) - cfg.max_pairs
        items = np.sort(np.random.default_rng([cfg.seed, 5]).permutation(items)[: cfg.max_pairs])
    order = np.random.default_rng(cfg.seed).permutation(len(items))
    n_test, n_valid = int(len(items) * cfg.test_frac), int(len(items) * cfg.valid_frac)
    split = np.zeros(len(items), dtype=np.int8)  # 0 train, 1 valid, 2 test
    split[order[:n_test]] = 2
    split[order[n_test : n_test + n_valid]] = 1
    partners = co_partners(ds, items, split == 0, cfg.neighbours, interactions_idx)
    np.savez(path, items=items, text=text.features[items].astype(np.float32),
             image=image.features[items].astype(np.float32), split=split, partners=partners,
             names=np.array([text.name, image.name]))  # fmt: skip
    return PairStats(len(items), int((split == 0).sum()), int((split == 1).sum()), n_test, skipped)


@torch.no_grad()
def heads_recall(heads: Heads, text: np.ndarray, image: np.ndarray) -> dict[str, float]:
    heads.eval()
    t, i = heads(torch.from_numpy(text), torch.from_numpy(image))
    return pair_recall_of(i, t)


@dataclass
class _HeadsStep:
    """One optimiser step: the symmetric CLIP loss on the batch's pairs, plus the
    co-interaction term (an item's image against a co-consumed train item's text)."""

    net: torch.nn.Module
    core: Heads
    opt: torch.optim.Optimizer
    clip_loss: torch.nn.Module
    device: torch.device
    co_weight: float

    def __call__(self, data, b: np.ndarray, rng: np.random.Generator) -> float:
        pick, has = draw_partners(data["partners"], b, rng)
        text = torch.from_numpy(data["text"][np.concatenate([b, pick])]).to(self.device)
        image = torch.from_numpy(data["image"][b]).to(self.device)
        t, i = self.net(text, image)
        t, partner = t[: len(b)], t[len(b) :]
        scale = self.core.logit_scale.exp()
        loss = self.clip_loss(i, t, scale)
        if self.co_weight > 0 and has.any():
            m = torch.from_numpy(has).to(self.device)
            logits = scale * i[m] @ partner[m].T
            target = torch.arange(int(m.sum()), device=self.device)
            loss = loss + self.co_weight * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.core.logit_scale.clamp_(0, np.log(100))
        return float(loss.detach())


@dataclass(frozen=True)
class HeadsJob:
    cfg: AlignConfig
    data: str


def heads_steps(job: HeadsJob, w: Worker) -> None:
    """The step code for the harness: DDP over the heads, the gathered CLIP loss, every epoch
    checkpointed (resume) with the best on validation image→text Recall@10 kept."""
    from open_clip.loss import ClipLoss

    if not Path(job.data).is_file():  # a node other than the driver's
        sync_down(Path(job.data).parent)
    cfg, data = job.cfg, dict(np.load(job.data))
    torch.manual_seed(cfg.seed)
    core = Heads(data["text"].shape[1], data["image"].shape[1], cfg.dim, cfg.hidden)
    net, core = w.ddp(core)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_idx = np.flatnonzero(data["split"] == 0)
    bs = batch_size_for(len(train_idx), cfg.batch_size, w)
    step = _HeadsStep(net, core, opt, ClipLoss(gather_with_grad=w.world > 1, rank=w.rank, world_size=w.world),
                      w.device, cfg.co_weight)  # fmt: skip
    state, best = resume_alignment(w, core, opt)
    valid = data["split"] == 1
    for epoch in range(state["epoch"], cfg.epochs):
        w.maybe_fail(epoch, cfg.fail_at_epoch)
        metrics = align_epoch(step, data, train_idx, epoch, bs, cfg.seed, w)
        state["epoch"], files = epoch + 1, None
        if w.chief:
            r = heads_recall(core, data["text"][valid], data["image"][valid])
            metrics.update({f"valid_{k}": v for k, v in r.items()})
            print(f"align heads epoch {epoch + 1}/{cfg.epochs}  loss {metrics['loss']:.3f}  "
                  f"valid i2t R@10 {r['i2t_recall@10']:.3f}", flush=True)  # fmt: skip
            if r["i2t_recall@10"] > state["best"]:
                state.update(best=r["i2t_recall@10"], best_epoch=epoch + 1)
                best = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
            w.log(metrics)
            files = {"last.pt": {"net": core.state_dict(), "opt": opt.state_dict()}, "best.pt": best,
                     "state.json": state}  # fmt: skip
        w.report(metrics, files)


def run_align_heads(catalog: str | Path, features: str | Path | None, out: str | Path, cfg: AlignConfig,
                    fmt: str | None = None, split: str | Path | None = None,
                    overwrite: bool = False) -> AlignReport:  # fmt: skip
    """Prepare the feature pairs, measure the random heads, train on Ray Train, keep the best
    epoch. ``features``: an extraction run (None: the catalogue's own feature matrices);
    ``split``: a saved split whose train part alone gives the co-interactions."""
    ds = load_dataset(catalog, fmt)
    idx = None if split is None else Split.load(split, ds).train
    run = HeadsRun(Path(out).resolve())
    sync_down(run.path)
    conf = {**cfg.model_dump(), "catalog": str(Path(catalog).resolve()),
            "features": None if features is None else str(Path(features).resolve()),
            "interactions": None if idx is None else hashlib.sha1(np.asarray(idx).tobytes()).hexdigest()}  # fmt: skip
    claimed = run.claim(conf, overwrite)
    if claimed == "same" and run.report_file.is_file():  # written last
        print(f"align heads: kept (this configuration finished in {run.path})", flush=True)
        return run.report()
    t0 = time.perf_counter()
    data_path = run.path / "heads_pairs.npz"
    stats = build_feature_pairs(ds, features, data_path, cfg, idx)
    data = dict(np.load(data_path))
    names = [str(n) for n in data["names"]]
    print(f"align heads: {stats.pairs} pairs of {names[0]} and {names[1]} (train {stats.train}, valid "
          f"{stats.valid}, test {stats.test}); skipped {stats.skipped}", flush=True)  # fmt: skip
    test = data["split"] == 2
    torch.manual_seed(cfg.seed)
    dims = {"text": int(data["text"].shape[1]), "image": int(data["image"].shape[1]), "dim": cfg.dim, "hidden": cfg.hidden}
    before = heads_recall(Heads(dims["text"], dims["image"], cfg.dim, cfg.hidden), data["text"][test], data["image"][test])
    if claimed != "same":
        run.metrics_file.unlink(missing_ok=True)
        forget_checkpoints(run.path)
    sync_up(run.path)
    spec = RunSpec(name="align_heads", out=run.path, workers=cfg.workers, use_gpu=cfg.use_gpu,
                   max_failures=cfg.max_failures, metrics_file=run.metrics_file.name)  # fmt: skip
    best = read_checkpoint(fit(heads_steps, HeadsJob(cfg, str(data_path)), spec), ["best.pt"])["best.pt"]
    saved = {"state": best, "dims": dims, "modalities": {"text": names[0], "image": names[1]}}
    atomic_write(run.checkpoint, lambda tmp: torch.save(saved, tmp))
    after = heads_recall(load_heads(run.checkpoint)[0], data["text"][test], data["image"][test])
    curve = read_metrics(run.metrics_file)
    report = AlignReport(
        arch=f"heads:{names[0]}+{names[1]}->{cfg.dim}", config=cfg.model_dump(), pairs=asdict(stats),
        random_init=False, test_before=before, test_after=after,
        best_epoch=max(curve, key=lambda m: m["valid_i2t_recall@10"])["epoch"], epochs=curve,
        checkpoint=str(run.checkpoint), seconds=time.perf_counter() - t0,
    )  # fmt: skip
    run.write_report(report)
    plot_curves(curve, [("loss", "training loss"), ("valid_i2t_recall@10", "image→text Recall@10")],
                run.path / "heads_curve.png",
                lines=[RefLine("test, before", 1, before["i2t_recall@10"], ":", "grey"),
                       RefLine("test, after", 1, after["i2t_recall@10"])])  # fmt: skip
    print(f"align heads: test image->text Recall@10 {before['i2t_recall@10']:.3f} (random heads) -> "
          f"{after['i2t_recall@10']:.3f} (best epoch {report.best_epoch}); heads {run.checkpoint}  "
          f"({report.seconds:.0f} s)", flush=True)  # fmt: skip
    sync_up(run.path)
    return report
