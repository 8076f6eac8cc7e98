"""What the tools may read. ``EvidenceStore`` holds everything once per dataset; ``Evidence`` is
one episode's view of it and hands out only what the episode observes — a masked group raises
``MaskedModality`` instead of returning data, so no tool can leak a masked modality by accident
(the tests check outputs are unchanged when masked features are replaced by noise).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metamodal.agent.episodes import Episode, evidence_groups
from metamodal.data import Dataset, FeatureModality, TextModality
from metamodal.data.missing import GRAPH
from metamodal.extract.shared_space import IMAGE_SHARED, TEXT_SHARED, shared_space

STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "are",
        "was",
        "were",
        "his",
        "her",
        "its",
        "their",
        "you",
        "your",
        "not",
        "but",
        "all",
        "any",
        "who",
        "what",
        "when",
        "where",
        "which",
        "will",
        "would",
        "can",
        "could",
        "has",
        "have",
        "had",
        "been",
        "into",
        "out",
        "about",
        "over",
        "more",
        "most",
        "some",
        "such",
        "than",
        "then",
        "they",
        "them",
        "there",
        "these",
        "those",
        "also",
        "just",
        "only",
        "very",
        "one",
        "two",
        "new",
        "film",
        "movie",
        "seen",
    ]
)


class MaskedModality(RuntimeError):
    """A tool asked for evidence the episode does not observe."""


def unit_rows(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Centred (over present rows) and unit-normalised rows; absent rows zero."""
    x = np.asarray(x, dtype=np.float32).copy()
    x[~present] = 0.0
    if present.any():
        x[present] -= x[present].mean(0)
        x[present] /= np.maximum(np.linalg.norm(x[present], axis=1, keepdims=True), 1e-12)
    return x


def keywords_of(texts: list[str | None], top: int = 8) -> list[list[str]]:
    """Each item's ``top`` TF-IDF keywords (MMSRARec's keyword summaries, in their simplest form:
    no LLM summariser, the catalogue's own distinctive words)."""
    docs = [
        [w for w in re.findall(r"[a-z][a-z0-9\-]{2,}", (t or "").lower()) if w not in STOPWORDS]
        for t in texts
    ]
    df = Counter(w for d in docs for w in set(d))
    n = max(1, len(docs))
    out = []
    for d in docs:
        tf = Counter(d)
        ranked = sorted(tf, key=lambda w: (-tf[w] * math.log(n / df[w]), w))
        out.append(ranked[:top])
    return out


@dataclass
class EvidenceStore:
    groups: dict[str, list[str]]  # group -> feature modality names
    features: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (unit rows, present)
    keywords: dict[str, list[list[str]]]  # group -> per-item keywords (text modalities)
    graph_items: np.ndarray | None  # [n_items, d] the graph model's item vectors
    aligned: tuple[str, str] | None  # (image modality, text modality) in one CLIP space
    # features outside ``groups`` (projections into an alignment space) -> the group whose
    # masking masks them
    derived: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        ds: Dataset,
        graph_items: np.ndarray | None,
        aligned: tuple[str, str] | None = None,
        heads: str | Path | None = None,
    ) -> EvidenceStore:
        """``heads``: a ``metamodal align --mode heads`` run over ``ds``'s features; the
        ``cross_modal`` tool then reads its shared space rather than a CLIP pair."""
        groups = {g: [] for g in evidence_groups(ds)}
        features, keywords = {}, {}
        for name, mod in ds.modalities.items():
            if isinstance(mod, FeatureModality):
                groups[mod.kind].append(name)
                features[name] = (unit_rows(mod.features, mod.present), mod.present.copy())
            elif isinstance(mod, TextModality):
                texts = [t if p else None for t, p in zip(mod.texts, mod.present, strict=True)]
                keywords[mod.kind] = keywords_of(texts)
        derived = {}
        if heads is not None:
            shared = shared_space(ds, heads)
            features.update(shared.rows)
            derived = shared.groups(ds)
            aligned = (IMAGE_SHARED, TEXT_SHARED)
        if aligned is None and {"image_clip", "text_clip"} <= set(features):
            aligned = ("image_clip", "text_clip")
        return cls(groups, features, keywords, graph_items, aligned, derived)

    def sources(self) -> list[str]:
        """The evidence sources an availability pattern ranges over: ``graph`` and every group
        some tool can read (features, or raw text for keywords)."""
        return [g for g in self.groups if g == GRAPH or self.groups[g] or g in self.keywords]

    def group_of(self, name: str) -> str:
        """The evidence group a modality belongs to (raw text modalities included)."""
        for g, names in self.groups.items():
            if name in names:
                return g
        if name in self.derived:
            return self.derived[name]
        raise KeyError(f"modality '{name}' is in no evidence group")

    def view(self, ep: Episode) -> Evidence:
        return Evidence(self, ep)

    def catalogue_scores(self, group: str, history: np.ndarray) -> np.ndarray | None:
        """Every item's cosine with the history's profile in ``group`` (averaged over its
        feature modalities; −inf where an item lacks them): the surviving evidence's nearest
        neighbours, from which target-positive pools draw hard negatives. None when the group
        has no features or no history item has them."""
        per = []
        for name in self.groups.get(group, []):
            x, present = self.features[name]
            h = history[present[history]]
            if not len(h):
                continue
            prof = x[h].mean(0)
            s = (x @ (prof / max(float(np.linalg.norm(prof)), 1e-12))).astype(np.float64)
            s[~present] = np.nan
            per.append(s)
        if not per:
            return None
        s = mean_present(per)
        return np.where(np.isnan(s), -np.inf, s)



def mean_present(rows: list[np.ndarray]) -> np.ndarray:
    """Per candidate, the mean of the rows that score it (NaN: cannot), NaN where none does —
    ``np.nanmean`` without its warning for a candidate no row scores, which is expected here."""
    x = np.stack(rows)
    n = (~np.isnan(x)).sum(0)
    return np.where(n > 0, np.nansum(x, 0) / np.maximum(n, 1), np.nan)

class Evidence:
    def __init__(self, store: EvidenceStore, ep: Episode) -> None:
        self._store, self.ep = store, ep

    def observed(self, group: str) -> bool:
        return group in self.ep.available

    def _require(self, group: str) -> None:
        if not self.observed(group):
            raise MaskedModality(f"'{group}' is not observed in this episode")

    def features(self, group: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        self._require(group)
        return [(n, *self._store.features[n]) for n in self._store.groups.get(group, [])]

    def modality(self, name: str, group: str) -> tuple[np.ndarray, np.ndarray]:
        self._require(group)
        return self._store.features[name]

    def keywords(self, group: str = "text") -> list[list[str]] | None:
        self._require(group)
        return self._store.keywords.get(group)

    def graph(self) -> np.ndarray | None:
        self._require(GRAPH)
        return self._store.graph_items

    def first_stage(self) -> np.ndarray:
        """The retriever's scores are collaborative evidence: masked with ``graph``."""
        self._require(GRAPH)
        return self.ep.first_stage

    @property
    def aligned(self) -> tuple[str, str] | None:
        return self._store.aligned

    def group_of(self, name: str) -> str:
        return self._store.group_of(name)
