"""The encode stage of extraction: an actor that loads its encoder once and embeds batches.

Rows arrive with ``idx``, ``payload`` (text, or the image path), ``ok`` and ``reason`` (and
``pixels`` for images, from ``decode.decode_batch``) and leave with ``embedding`` (zeros where
absent), ``present`` and ``reason``.
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
        if ok.any():
            if "pixels" in batch:
                emb[ok] = self.encoder.encode_images(batch["pixels"][ok])
            else:
                emb[ok] = self.encoder.encode_texts([str(t) for t in batch["payload"][ok]])
        return {"idx": batch["idx"], "present": ok, "reason": batch["reason"], "embedding": emb}
