"""The encode stage of extraction: an actor that loads its encoder once and embeds batches.

Rows arrive with ``idx``, ``payload`` (text, or the image path), ``ok`` and ``reason`` (and
``pixels`` for images, from ``decode.decode_batch``) and leave with ``embedding`` (zeros where
absent), ``present`` and ``reason`` — and ``labels`` (top ImageNet classes, or the LLM's text
keywords; "" where absent) when the encoder names what it reads.
"""

from __future__ import annotations

import numpy as np
import torch

from metamodal.extract.encoders import Encoder, EncoderSpec


class Encode:
    """Actor: one per GPU (``num_gpus=1``) or a few fractional-CPU actors on CPU hosts."""

    def __init__(self, spec: EncoderSpec, device: str, threads: int) -> None:
        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.encoder = Encoder(spec, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["ok"].astype(bool)
        emb = np.zeros((len(ok), self.encoder.dim), dtype=np.float32)
        out = {"idx": batch["idx"], "present": ok, "reason": batch["reason"], "embedding": emb}
        if "pixels" in batch and self.encoder.labels_images:
            labels = np.full(len(ok), "", dtype=object)
            if ok.any():
                emb[ok], labels[ok] = self.encoder.encode_images_labelled(batch["pixels"][ok])
            out["labels"] = labels
        elif "pixels" not in batch and self.encoder.labels_texts:
            labels = np.full(len(ok), "", dtype=object)
            if ok.any():
                emb[ok], labels[ok] = self.encoder.encode_texts_labelled([str(t) for t in batch["payload"][ok]])
                empty = ok & (labels == "")
                out["present"] = ok & ~empty
                out["reason"] = np.where(empty, "no_keywords", batch["reason"])
            out["labels"] = labels
        elif ok.any() and "pixels" in batch:
            emb[ok] = self.encoder.encode_images(batch["pixels"][ok])
        elif ok.any():
            emb[ok] = self.encoder.encode_texts([str(t) for t in batch["payload"][ok]])
        return out
