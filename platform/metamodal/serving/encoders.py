"""Query encoders for content queries (a free text, an image): the encoders that produced the
run's features (read from the extraction manifest), loaded and warmed once per replica.

They are the heavy part of a cold-start request, so they live in their own deployment, reached
only by content queries; user and history queries never pay for them. Serve may call a replica
from several threads: tokenizers and torch modules are not safe to share across threads, so one
lock serialises model work (batching, not threads, is where throughput comes from).
"""

from __future__ import annotations

import base64
import binascii
import io
import threading

import numpy as np

from metamodal.extract.shared_space import SHARED, heads_file, load_heads, project
from metamodal.rundir import ExtractRun
from metamodal.serving.config import ServeConfig
from metamodal.train.artifacts import load_run

CONTENT_QUERIES = {"text": "text", "image_b64": "image"}


class BadQuery(ValueError):
    """A well-formed request the catalogue cannot answer (HTTP 422)."""


class QueryEncoderCore:
    """``encode(kind, value) -> (modality, vector)`` for ``text`` and ``image_b64`` queries."""

    def __init__(self, cfg: ServeConfig) -> None:
        from metamodal.llm import quiet_transformers

        quiet_transformers()  # no weight-loading bars in a replica's log
        run = load_run(cfg.retriever_run)
        self.modalities = set(run.ds.modalities)
        self.features_dir = run.config["data"].get("features")
        self._lock = threading.Lock()
        self._encoders: dict[str, tuple] = {}
        for source in ("text", "image"):
            found = self._manifest_encoder(source)
            if found is not None:
                self._encoders[source] = found
        self._heads = self._image_heads(cfg.heads)

    def _image_heads(self, heads: str | None):
        """The alignment heads that carry an image query into the shared space, when the
        deployment has them; they must read this image encoder's features."""
        if heads is None or "image" not in self._encoders:
            return None
        net, reads = load_heads(heads_file(heads))
        if reads["image"] != self._encoders["image"][1].modality:
            raise ValueError(f"heads {heads} read {reads['image']!r}, the image encoder writes "
                             f"{self._encoders['image'][1].modality!r}")  # fmt: skip
        return net.image

    def _manifest_encoder(self, source: str):
        """(encoder, spec) of the extraction encoder that read ``source``, or None."""
        if not self.features_dir:
            return None
        from metamodal.extract.encoders import Encoder, EncoderSpec

        for spec in ExtractRun(self.features_dir).manifest().config["encoders"]:
            es = EncoderSpec(**spec)
            if es.source == source and es.modality in self.modalities:
                return Encoder(es), es
        return None

    def sources(self) -> list[str]:
        return sorted(self._encoders)

    def warm(self) -> None:
        """One encode per encoder at replica start: weights loaded, kernels and tokenizer caches
        built, so the first request does not stall."""
        for kind, source in CONTENT_QUERIES.items():
            if source in self._encoders:
                value = "warm up" if source == "text" else base64.b64encode(tiny_png()).decode()
                self.encode(kind, value)

    def encode(self, kind: str, value: str) -> tuple[str, np.ndarray]:
        if kind not in CONTENT_QUERIES:
            raise BadQuery(f"unknown content query kind {kind!r}")
        source = CONTENT_QUERIES[kind]
        if source not in self._encoders:
            why = ("this model was trained without extracted features" if not self.features_dir
                   else f"no {source} encoder among this catalogue's features")  # fmt: skip
            raise BadQuery(f"{why}: no {source} query possible")
        enc, spec = self._encoders[source]
        pixels = decode_image(value, spec) if source == "image" else None  # outside the lock
        with self._lock:
            q = enc.encode_texts([value]) if source == "text" else enc.encode_images(pixels)
            if source == "image" and self._heads is not None:
                return SHARED, project(self._heads, q).astype(np.float32)
        return spec.modality, np.asarray(q, np.float32)


def tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def decode_image(b64: str, spec) -> np.ndarray:
    from metamodal.extract.decode import load_image
    from metamodal.extract.encoders import image_size

    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadQuery(f"image_b64 is not valid base64: {e}") from None
    pixels, why = load_image(io.BytesIO(raw), image_size(spec))
    if pixels is None:
        raise BadQuery(f"image_b64 could not be decoded as an image ({why})")
    return pixels[None]
