"""Extraction throughput: the plain single-process loop against Ray Data with 1 and 2 CPU
actors over the same encoders (MiniLM text and, by default, the ImageNet EfficientNet-Lite0
image tower; ``--arch`` takes an open_clip architecture too), and on a GPU host the pipeline
against the bare image-tower forward (``--gpu-arch``).

    python benchmarks/extract_throughput.py --catalog ../shared/data/ml100k-mm --out runs/extract.json
    python benchmarks/extract_throughput.py --catalog ../shared/data/ml100k-mm --gpu --out gpu.json

Items/s counts the items encoded across both modalities. Two views are reported for every
arm: ``steady`` (after the one-time model load: loop timed after construction, pipeline timed
from its first output batch) and ``end_to_end`` (model loads and actor start-up included). The
headline keys use steady state; the end-to-end ones sit beside them. EfficientNet-Lite runs
with its real weights; an open_clip tower has random ones (no CLIP weights offline), which
does not change its throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from metamodal.data import load_dataset
from metamodal.data.modalities import has_text
from metamodal.extract.decode import load_image
from metamodal.extract.encoders import Encoder, EncoderSpec, image_size
from metamodal.extract.pipeline import ExtractConfig, ExtractOptions, build_config, extract_modality
from metamodal.raylogs import quiet_driver, verbose


def specs(arch: str, text: bool = True) -> list[EncoderSpec]:
    """The extraction job's own encoders for ``arch``: EfficientNet-Lite with its ImageNet
    weights, or an open_clip tower with random ones (its throughput is the same)."""
    from metamodal.extract.efficientnet import ARCHS

    return build_config(ExtractOptions(text=text, arch=arch, random_image_init=arch not in ARCHS)).encoders


def payloads(ds, spec: EncoderSpec) -> list[str]:
    if spec.source == "text":  # the same length order the pipeline uses
        return sorted((t for t in ds.modalities["text"].texts if has_text(t)), key=len)
    return [p for p in ds.modalities["image"].paths if p is not None]


def loop_arm(ds, spec: EncoderSpec, batch: int, threads: int, device: str = "cpu") -> dict:
    """What a user writes first: decode and encode batch after batch in one process."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    enc = Encoder(spec, device)
    load = time.perf_counter() - t0
    items = payloads(ds, spec)
    size = image_size(spec) if spec.source == "image" else 0
    t1 = time.perf_counter()
    n = 0
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        if spec.source == "text":
            enc.encode_texts(chunk)
            n += len(chunk)
        else:
            px = [load_image(p, size)[0] for p in chunk]
            px = np.stack([p for p in px if p is not None])
            enc.encode_images(px)
            n += len(px)
    if device == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t1
    return {
        "items": n,
        "load_s": load,
        "seconds": secs,
        "steady": n / secs,
        "e2e": n / (secs + load),
    }


def start_quiet_ray(**kw) -> None:
    """Ray for the pipeline arms, its Data progress logs giving way to the arms' own lines."""
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
    if not verbose():
        quiet_driver()


def ray_arm(ds, spec: EncoderSpec, cfg: ExtractConfig) -> dict:
    with tempfile.TemporaryDirectory() as d:
        s = extract_modality(ds, spec, Path(d), cfg)
    if s["steady_items_per_s"] is None:  # every item came in the first batch: no steady state
        raise SystemExit(f"{spec.modality}: {s['encoded_now']} items fit in one batch of "
                         f"{cfg.batch_size}, so a pipeline arm has no steady rate; use a smaller "
                         "--batch-size or a larger catalogue")  # fmt: skip
    return {
        "items": s["encoded_now"],
        "startup_s": s["startup_seconds"],
        "seconds": s["seconds"],
        "steady": s["steady_items_per_s"],
        "e2e": s["encoded_now"] / s["seconds"],
    }


def combine(per_mod: dict[str, dict]) -> tuple[float, float]:
    """Items/s over all modalities: total items over the summed time of each view."""
    items = sum(r["items"] for r in per_mod.values())
    steady = items / sum(r["items"] / r["steady"] for r in per_mod.values())
    e2e = items / sum(r["items"] / r["e2e"] for r in per_mod.values())
    return steady, e2e


def cpu_benchmark(a: argparse.Namespace) -> dict:
    import ray

    ds = load_dataset(a.catalog)
    cores = os.cpu_count() or 1
    encoders = specs(a.arch)
    res: dict = {"catalog": a.catalog, "cores": cores, "batch_size": a.batch_size, "arch": a.arch,
                 "random_weights": any(s.random_init for s in encoders), "arms": {}}  # fmt: skip
    arms = res["arms"]
    for threads in sorted({cores, 1}, reverse=True):
        name = "loop" if threads == cores else "loop_1_thread"
        arms[name] = {s.modality: loop_arm(ds, s, a.batch_size, threads) for s in encoders}
        print(f"{name}: {arms[name]}", flush=True)
    start_quiet_ray(num_cpus=cores)
    torch.set_num_threads(1)
    for n in (1, 2):
        cfg = ExtractConfig(encoders=encoders, actors=n, batch_size=a.batch_size)
        arms[f"actors_{n}"] = {s.modality: ray_arm(ds, s, cfg) for s in cfg.encoders}
        print(f"actors_{n}: {arms[f'actors_{n}']}", flush=True)
    ray.shutdown()
    for name, per_mod in list(arms.items()):
        steady, e2e = combine(per_mod)
        res[f"{name}_items_per_s"] = steady
        res[f"{name}_end_to_end_items_per_s"] = e2e
    res["speedup_2_actors_vs_loop"] = res["actors_2_items_per_s"] / res["loop_items_per_s"]
    res["speedup_2_actors_vs_loop_end_to_end"] = (
        res["actors_2_end_to_end_items_per_s"] / res["loop_end_to_end_items_per_s"]
    )
    res["speedup_2_actors_vs_loop_1_thread"] = (
        res["actors_2_items_per_s"] / res["loop_1_thread_items_per_s"]
    )
    return res


def bare_forward(spec: EncoderSpec, batch: int, iters: int) -> float:
    """The model alone: preprocessed pixels already on the GPU, forward only; median items/s."""
    enc = Encoder(spec, "cuda")
    s = image_size(spec)
    x = torch.randint(0, 255, (batch, s, s, 3), dtype=torch.uint8, device="cuda")
    rates = []
    with torch.inference_mode():
        for i in range(iters + 3):
            torch.cuda.synchronize()
            t = time.perf_counter()
            enc.embed_pixels(x)
            torch.cuda.synchronize()
            if i >= 3:
                rates.append(batch / (time.perf_counter() - t))
    return statistics.median(rates)


def replicated_catalog(src: str, times: int, out: Path) -> Path:
    """The catalog's images ``times`` over, as a generic catalog: enough work for a GPU. ``src``
    is a catalog, or a plain folder of images (what travels to a GPU host)."""
    if any(Path(src).glob("*.jpg")):
        paths = sorted(str(p) for p in Path(src).glob("*.jpg"))
    else:
        paths = [p for p in load_dataset(src).modalities["image"].paths if p is not None]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "items.jsonl", "w") as f:
        for k in range(times):
            for i, p in enumerate(paths):
                f.write(json.dumps({"id": f"r{k}_{i}", "image": str(Path(p).resolve())}) + "\n")
    with open(out / "interactions.csv", "w") as f:
        f.write("user_id,item_id\n" + "".join(f"u{i % 50},r0_{i}\n" for i in range(len(paths))))
    return out


def gpu_benchmark(a: argparse.Namespace) -> dict:
    import ray

    (spec,) = specs(a.gpu_arch, text=False)
    bare = bare_forward(spec, a.gpu_batch_size, iters=20)
    with tempfile.TemporaryDirectory() as d:
        ds = load_dataset(replicated_catalog(a.catalog, a.gpu_repeat, Path(d) / "cat"))
        start_quiet_ray()
        arms = {}
        for per_gpu in a.gpu_actors_per_gpu:
            cfg = ExtractConfig(
                encoders=[spec],
                batch_size=a.gpu_batch_size,
                device="cuda",
                shard_size=8192,
                gpus_per_actor=1.0 / per_gpu,
            )
            arms[per_gpu] = ray_arm(ds, spec, cfg)
            print(f"{per_gpu} actor(s) per GPU: {arms[per_gpu]}", flush=True)
        ray.shutdown()
    best = max(arms, key=lambda k: arms[k]["steady"])
    pipe = arms[best]
    return {
        "arch": a.gpu_arch,
        "random_weights": spec.random_init,
        "gpu": torch.cuda.get_device_name(0),
        "batch_size": a.gpu_batch_size,
        "images": pipe["items"],
        "bare_forward_items_per_s": bare,
        "pipeline_items_per_s": pipe["steady"],
        "pipeline_end_to_end_items_per_s": pipe["e2e"],
        "pipeline_startup_s": pipe["startup_s"],
        "pipeline_vs_bare": pipe["steady"] / bare,
        "actors_per_gpu": best,
        "by_actors_per_gpu": {str(k): v for k, v in arms.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--catalog", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gpu-arch", default="efficientnet_lite0", help="the GPU arm's image tower")
    p.add_argument("--arch", default="efficientnet_lite0", help="efficientnet_lite0|1|2 or an open_clip arch")
    p.add_argument("--gpu", action="store_true", help="GPU arm only (needs CUDA)")
    p.add_argument("--gpu-batch-size", type=int, default=256)
    p.add_argument("--gpu-actors-per-gpu", type=int, nargs="+", default=[1, 2])
    p.add_argument("--gpu-repeat", type=int, default=20, help="catalog images repeated N times")
    a = p.parse_args()
    if a.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: CUDA is not available on this host")
    res = gpu_benchmark(a) if a.gpu else cpu_benchmark(a)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "arms"}, indent=2))


if __name__ == "__main__":
    main()
