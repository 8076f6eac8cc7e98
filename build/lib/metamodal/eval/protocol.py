"""The evaluation protocol on a split: which items are masked, which slices are reported.

Valid: rank everything but the user's training items. Test: also mask validation items
(MMRec). Slices: cold users and cold items (from the missingness masks, plus items that simply
have no training interaction), short histories, and items lacking each modality.
"""

from __future__ import annotations

import numpy as np

from metamodal.data.dataset import Dataset
from metamodal.data.missing import Missingness
from metamodal.data.splits import Split
from metamodal.eval.metrics import DEFAULT_KS
from metamodal.eval.ranking import EvalResult, ScoreFn, evaluate


def standard_slices(
    ds: Dataset,
    split: Split,
    missing: Missingness | None = None,
    train_idx: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    train_idx = split.train if train_idx is None else train_idx
    counts_u = np.bincount(ds.interactions.user[train_idx], minlength=ds.n_users)
    counts_i = np.bincount(ds.interactions.item[train_idx], minlength=ds.n_items)
    user_slices = {"users_le5_train": counts_u <= 5}
    item_slices = {"cold_items": counts_i == 0}
    present = missing.present if missing else {k: m.present for k, m in ds.modalities.items()}
    for name, mask in present.items():
        item_slices[f"items_without_{name}"] = ~mask
    if missing is not None:
        user_slices["cold_users"] = missing.cold_users
    return user_slices, item_slices


def evaluate_split(
    score_fn: ScoreFn,
    ds: Dataset,
    split: Split,
    part: str = "test",
    missing: Missingness | None = None,
    ks: tuple[int, ...] = DEFAULT_KS,
    slices: bool = True,
    batch_size: int = 1024,
) -> EvalResult:
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    exclude_idx = split.train if part == "valid" else np.concatenate([split.train, split.valid])
    positives = ds.matrix(split.valid if part == "valid" else split.test)
    user_slices, item_slices = (
        standard_slices(ds, split, missing, missing.train_indices(ds, split) if missing else None)
        if slices
        else ({}, {})
    )
    res = evaluate(
        score_fn,
        positives,
        ds.matrix(exclude_idx),
        ks,
        user_slices=user_slices,
        item_slices=item_slices,
        batch_size=batch_size,
    )
    empty = [k for k, n in res.slice_users.items() if n == 0]
    for k in empty:
        res.slices.pop(k)
        res.slice_users.pop(k)
    return res
