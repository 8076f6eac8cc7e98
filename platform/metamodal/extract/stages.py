"""The Ray Data stages of extraction: decode in CPU tasks, encode in an actor pool.

Each row carries ``idx`` (item index), ``payload`` (text, or image path) and leaves with
``embedding`` (float32 list, empty when absent), ``present`` and ``reason``. A bad input turns
into ``present=False`` with a reason; it never raises out of a batch.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from metamodal.data.modalities import has_text
from metamodal.extract.encoders import Encoder, EncoderSpec


def image_transform(spec: EncoderSpec):
    import open_clip

    size = spec.image_size or open_clip.get_model_config(spec.arch)["vision_cfg"]["image_size"]
    return open_clip.image_transform(size, is_train=False)


def decode_image(path: str, transform) -> tuple[np.ndarray | None, str]:
    """(pixels [3, H, W] float32, "") or (None, reason)."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        return None, "image_file_missing"
    except UnidentifiedImageError:
        return None, "image_unreadable"
    except (OSError, SyntaxError, ValueError):
        return None, "image_corrupt"
    if min(rgb.size) < 2:
        return None, "image_too_small"
    return transform(rgb).numpy().astype(np.float32), ""


def decode_batch(batch: dict[str, np.ndarray], spec: EncoderSpec) -> dict[str, np.ndarray]:
    """CPU task: images to pixel tensors (decode + resize), texts checked for content."""
    n = len(batch["idx"])
    ok = np.zeros(n, dtype=bool)
    reasons = np.array([""] * n, dtype=object)
    if spec.source == "text":
        for k, t in enumerate(batch["payload"]):
            ok[k] = has_text(t)
            reasons[k] = "" if ok[k] else "text_empty"
        return {**batch, "ok": ok, "reason": reasons}
    transform = image_transform(spec)
    pixels = []
    for k, path in enumerate(batch["payload"]):
        px, why = decode_image(str(path), transform)
        ok[k], reasons[k] = px is not None, why
        pixels.append(px)
    shape = next((p.shape for p in pixels if p is not None), (3, 1, 1))
    stacked = np.stack([p if p is not None else np.zeros(shape, np.float32) for p in pixels])
    return {**batch, "ok": ok, "reason": reasons, "pixels": stacked}


class Encode:
    """Actor: loads the encoder once, embeds the rows that decoded."""

    def __init__(self, spec: EncoderSpec, device: str, threads: int) -> None:
        torch.set_num_threads(max(1, threads))
        self.encoder = Encoder(spec, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["ok"].astype(bool)
        n = len(ok)
        emb = np.zeros((n, self.encoder.dim), dtype=np.float32)
        if ok.any():
            if "pixels" in batch:
                emb[ok] = self.encoder.encode_images(batch["pixels"][ok])
            else:
                emb[ok] = self.encoder.encode_texts([str(t) for t in batch["payload"][ok]])
        return {"idx": batch["idx"], "present": ok, "reason": batch["reason"], "embedding": emb}
