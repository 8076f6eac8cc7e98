"""One representation of a recommendation dataset, whatever format it came from.

Users and items are dense indices (0..n-1) with their raw ids kept beside them; interactions
are parallel arrays (user, item, optional rating / timestamp / split label); item modalities
are aligned to the item index with presence masks. Every loader returns a ``Dataset``; every
split, model and evaluator takes one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metamodal.data.load_errors import LoadReport
from metamodal.data.modalities import FeatureModality, Modality

SPLIT_NAMES = ("train", "valid", "test")


@dataclass
class Interactions:
    """Parallel arrays, one entry per interaction. ``label`` is 0/1/2 = train/valid/test
    where the source fixes the split (MMRec ``x_label``, LATTICE JSON files), else None."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    label: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.user = np.asarray(self.user, dtype=np.int64)
        self.item = np.asarray(self.item, dtype=np.int64)
        n = len(self.user)
        for name in ("item", "rating", "timestamp", "label"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"interactions: '{name}' has {len(arr)} entries, 'user' has {n}")
        if self.rating is not None:
            self.rating = np.asarray(self.rating, dtype=np.float32)
        if self.timestamp is not None:
            self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        if self.label is not None:
            self.label = np.asarray(self.label, dtype=np.int8)

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray) -> Interactions:
        def t(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return Interactions(
            self.user[idx], self.item[idx], t(self.rating), t(self.timestamp), t(self.label)
        )


def drop_duplicates(inter: Interactions, report: LoadReport, source: str) -> Interactions:
    """Keep the first (user, item) pair; count the rest as skipped, never drop them silently."""
    key = inter.user * (int(inter.item.max(initial=0)) + 1) + inter.item
    _, first = np.unique(key, return_index=True)
    if len(first) == len(inter):
        return inter
    keep = np.sort(first)
    dup = np.setdiff1d(np.arange(len(inter)), keep)
    report.skip(
        "duplicate_interaction",
        f"{source} row {int(dup[0]) + 1}: user {int(inter.user[dup[0]])}, item {int(inter.item[dup[0]])}",
        len(dup),
    )
    return inter.take(keep)


@dataclass
class Dataset:
    name: str
    format: str
    path: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    interactions: Interactions
    modalities: dict[str, Modality] = field(default_factory=dict)
    item_meta: pd.DataFrame | None = None
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids)
        self.item_ids = np.asarray(self.item_ids)
        inter = self.interactions
        for axis, ids, n in (
            ("user", inter.user, self.n_users),
            ("item", inter.item, self.n_items),
        ):
            if len(ids) and (ids.min() < 0 or ids.max() >= n):
                bad = int(np.flatnonzero((ids < 0) | (ids >= n))[0])
                raise ValueError(
                    f"{self.path}: interaction {bad + 1} has {axis} index {int(ids[bad])}, "
                    f"outside 0..{n - 1}"
                )
        for name, mod in self.modalities.items():
            if len(mod) != self.n_items:
                raise ValueError(
                    f"{self.path}: modality '{name}' covers {len(mod)} items, dataset has {self.n_items}"
                )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def density(self) -> float:
        return self.n_interactions / max(1, self.n_users * self.n_items)

    def feature_modalities(self) -> dict[str, FeatureModality]:
        return {k: m for k, m in self.modalities.items() if isinstance(m, FeatureModality)}

    def matrix(self, idx: np.ndarray | None = None) -> sp.csr_matrix:
        """Binary user × item CSR of the interactions at ``idx`` (all when None)."""
        u = self.interactions.user if idx is None else self.interactions.user[idx]
        i = self.interactions.item if idx is None else self.interactions.item[idx]
        m = sp.csr_matrix(
            (np.ones(len(u), dtype=np.float32), (u, i)), shape=(self.n_users, self.n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def fingerprint(self) -> str:
        """Stable hash of the interactions: a saved split refuses to load onto other data."""
        h = hashlib.sha1()
        h.update(np.int64(self.n_users).tobytes() + np.int64(self.n_items).tobytes())
        h.update(self.interactions.user.tobytes())
        h.update(self.interactions.item.tobytes())
        return h.hexdigest()[:16]

    def items_fingerprint(self) -> str:
        """Stable hash of the item ids in order: extraction shards resumed onto an edited
        catalogue would cover some items twice and others never."""
        return hashlib.sha1("\n".join(map(str, self.item_ids)).encode()).hexdigest()[:16]

    def summary(self) -> dict:
        """What ``metamodal data inspect`` prints (and ``--json`` writes)."""
        out: dict = {
            "name": self.name,
            "format": self.format,
            "path": self.path,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.density,
            "has_rating": self.interactions.rating is not None,
            "has_timestamp": self.interactions.timestamp is not None,
            "modalities": {k: m.n_present for k, m in self.modalities.items()},
            "modality_kinds": {k: m.kind for k, m in self.modalities.items()},
            "modality_dims": {k: m.dim for k, m in self.feature_modalities().items()},
            "report": self.report.to_dict(),
        }
        label = self.interactions.label
        if label is not None:
            out["splits"] = {
                name: int((label == code).sum()) for code, name in enumerate(SPLIT_NAMES)
            }
        counts = np.bincount(self.interactions.user, minlength=self.n_users)
        out["interactions_per_user"] = {
            "min": int(counts.min()) if len(counts) else 0,
            "median": float(np.median(counts)) if len(counts) else 0.0,
            "max": int(counts.max(initial=0)),
        }
        item_counts = np.bincount(self.interactions.item, minlength=self.n_items)
        out["items_without_interactions"] = int((item_counts == 0).sum())
        return out
