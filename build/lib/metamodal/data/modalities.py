"""Item modalities as small classes (Cornac style), each with a per-item presence mask.

Raw modalities (``text``, ``image``) hold what an encoder needs; feature modalities hold
precomputed vectors (MiniLM text, VGGish audio, CLIP image, ...). Every modality is aligned
to the dataset's item index, and ``present[i]`` is False where item i lacks it: downstream
code masks on that, never on guessed zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("text", "image", "audio", "other")
# Placeholder strings that sources write where text is missing; they carry no evidence.
TEXT_PLACEHOLDERS = frozenset(
    {"no overview found.", "no description", "n/a", "na", "none", "null", "nan"}
)


def has_text(t: str | None) -> bool:
    return bool(t and t.strip() and t.strip().lower() not in TEXT_PLACEHOLDERS)


@dataclass
class Modality:
    """Base: a name, a kind (text/image/audio/other) and a presence mask over items."""

    name: str
    kind: str
    present: np.ndarray  # bool [n_items]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"modality '{self.name}': kind must be one of {KINDS}, got {self.kind!r}"
            )
        self.present = np.asarray(self.present, dtype=bool)

    @property
    def n_present(self) -> int:
        return int(self.present.sum())

    def __len__(self) -> int:
        return len(self.present)

    def subset(self, items: np.ndarray) -> Modality:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass
class TextModality(Modality):
    """Raw item text; empty, whitespace-only or placeholder text counts as missing."""

    texts: list[str | None] | None = None

    @classmethod
    def from_texts(cls, texts: list[str | None], name: str = "text") -> TextModality:
        present = np.array([has_text(t) for t in texts], dtype=bool)
        clean = [t if p else None for t, p in zip(texts, present, strict=True)]
        return cls(name=name, kind="text", present=present, texts=clean)

    def subset(self, items: np.ndarray) -> TextModality:
        assert self.texts is not None
        return TextModality(
            self.name, self.kind, self.present[items], [self.texts[i] for i in items]
        )


@dataclass
class ImageModality(Modality):
    """Paths to item images on local disk. Presence here means "a file is there"; whether it
    decodes is the extraction job's business (it records a reason for each broken one)."""

    paths: list[str | None] | None = None

    @classmethod
    def from_paths(cls, paths: list[str | None], name: str = "image") -> ImageModality:
        present = np.array([bool(p) and Path(p).is_file() for p in paths], dtype=bool)
        clean = [p if ok else None for p, ok in zip(paths, present, strict=True)]
        return cls(name=name, kind="image", present=present, paths=clean)

    def subset(self, items: np.ndarray) -> ImageModality:
        assert self.paths is not None
        return ImageModality(
            self.name, self.kind, self.present[items], [self.paths[i] for i in items]
        )


@dataclass
class FeatureModality(Modality):
    """Precomputed float32 vectors [n_items, dim]; rows of absent items are zero."""

    features: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        assert self.features is not None
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim != 2 or self.features.shape[0] != len(self.present):
            raise ValueError(
                f"modality '{self.name}': features must be [n_items={len(self.present)}, dim], "
                f"got {self.features.shape}"
            )
        self.features[~self.present] = 0.0

    @property
    def dim(self) -> int:
        assert self.features is not None
        return int(self.features.shape[1])

    def subset(self, items: np.ndarray) -> FeatureModality:
        assert self.features is not None
        return FeatureModality(
            self.name, self.kind, self.present[items], self.features[items], self.source
        )


def guess_feature_kind(name: str) -> str:
    """Kind of a feature file from the encoder its name mentions (MMRec names files by encoder)."""
    n = name.lower()
    if any(k in n for k in ("minilm", "bert", "text", "sentence", "mpnet", "t5", "txt")):
        return "text"
    if any(k in n for k in ("vggish", "whisper", "audio", "wav2vec", "mfcc", "clap")):
        return "audio"
    if any(k in n for k in ("image", "img", "vit", "resnet", "clip", "cnn", "visual", "poster")):
        return "image"
    return "other"
