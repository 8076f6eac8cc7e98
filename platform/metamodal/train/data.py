"""What a zoo model trains on: the split's training interactions (cold items and users stripped
when a missingness spec asks), and the content modalities as feature matrices whose missing rows
are zeroed — the model sees presence only through the masks, never the dropped features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metamodal.data import Dataset, FeatureModality
from metamodal.data.missing import Missingness, MissingSpec, make_missingness
from metamodal.data.splits import Split
from metamodal.models import ModelData


def attach_features(ds: Dataset, features_dir: str | None) -> Dataset:
    """Add an extraction run's modalities (``metamodal extract --out DIR``) to the dataset."""
    if features_dir:
        from metamodal.data.loaders.embeddings import load_embeddings

        ds.modalities.update(load_embeddings(Path(features_dir), ds))
    return ds


def content_modalities(ds: Dataset, names: list[str] | None) -> list[str]:
    have = [k for k, m in ds.modalities.items() if isinstance(m, FeatureModality)]
    if names is None:
        return have
    unknown = sorted(set(names) - set(have))
    if unknown:
        raise ValueError(f"{ds.path}: no feature modality {unknown}; feature modalities: {have}")
    return list(names)


def normalise_features(x: np.ndarray, present: np.ndarray, how: str) -> np.ndarray:
    """Rows as the models see them (``DataSection.normalise``); absent rows stay zero. The mean is
    over present rows only, so a dropped modality never leaks into it."""
    x = np.asarray(x, dtype=np.float32).copy()
    x[~present] = 0.0
    if how == "none" or not present.any():
        return x
    if how == "center_l2":
        x[present] -= x[present].mean(0)
    norms = np.linalg.norm(x[present], axis=1, keepdims=True)
    x[present] /= np.maximum(norms, 1e-12)
    return x


def build_model_data(
    ds: Dataset,
    split: Split,
    names: list[str],
    miss: Missingness | None,
    normalise: str = "center_l2",
) -> tuple[ModelData, np.ndarray]:
    """(ModelData, training interaction indices)."""
    train_idx = miss.train_indices(ds, split) if miss else split.train
    feats = {}
    for name in names:
        mod = ds.modalities[name]
        present = miss.present[name] if miss else mod.present
        feats[name] = (normalise_features(mod.features, present, normalise), present.copy())
    return ModelData(ds.n_users, ds.n_items, ds.matrix(train_idx), feats), train_idx


def missingness_for(ds: Dataset, split: Split, spec: MissingSpec, out: Path) -> Missingness | None:
    """Draw (or reload) the run's missingness; None when the config asks for none."""
    if not spec.active:
        return None
    d = out / "split"
    if Missingness.saved(d):
        return Missingness.load(d)
    miss = make_missingness(ds, split, spec)
    miss.save(d)
    return miss
