"""Train/valid/test splits, saved beside the run so every result can be reproduced.

Methods:
- ``mmrec``: MMRec's protocol — per-user random 8:1:1; a user with fewer than 10 interactions
  gets one valid and one test item (the rest train);
- ``loo``: leave-last-out by time — each user's last interaction is test, the one before valid;
- ``time``: global-time — the earliest 80% of all interactions train, the next 10% valid;
- ``user_time``: per-user chronological 8:1:1 (the MMA paper's protocol) — each user's earliest
  80% train, the next 10% valid, the latest test (at least one of each once a user has three);
- ``given``: the split the source fixed (MMRec ``x_label``, LATTICE files, a ``split`` column).
In every method, valid/test interactions of users absent from train are dropped (counted in
``dropped``): a full-ranking evaluation has nothing to rank them by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from metamodal.data.dataset import SPLIT_NAMES, Dataset
from metamodal.rundir.base import load_arrays, save_arrays

METHODS = ("mmrec", "loo", "time", "user_time", "given")


@dataclass
class Split:
    """Interaction indices per part, plus how it was made."""

    method: str
    seed: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    fingerprint: str = ""
    dropped: dict[str, int] = field(default_factory=dict)

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def matrices(self, ds: Dataset) -> dict[str, sp.csr_matrix]:
        return {k: ds.matrix(v) for k, v in self.parts().items()}

    def summary(self) -> dict:
        return {
            "method": self.method,
            "seed": self.seed,
            **{k: int(len(v)) for k, v in self.parts().items()},
            "dropped": dict(self.dropped),
        }

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {**self.summary(), "fingerprint": self.fingerprint}
        save_arrays(d / "split.npz", d / "split.json", self.parts(), meta)
        return d

    @staticmethod
    def saved(directory: str | Path) -> bool:
        """Whether a whole split was saved there (``split.json`` is written last)."""
        return (Path(directory) / "split.json").is_file()

    @classmethod
    def load(cls, directory: str | Path, ds: Dataset | None = None) -> Split:
        d = Path(directory)
        meta, arrays = load_arrays(d / "split.npz", d / "split.json")
        split = cls(
            meta["method"],
            meta["seed"],
            arrays["train"],
            arrays["valid"],
            arrays["test"],
            meta.get("fingerprint", ""),
            meta.get("dropped", {}),
        )
        if ds is not None and split.fingerprint and split.fingerprint != ds.fingerprint():
            raise ValueError(
                f"{d / 'split.json'}: split was made for other data (fingerprint "
                f"{split.fingerprint}, dataset {ds.fingerprint()})"
            )
        return split


def _by_user(user: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(user, kind="stable")
    bounds = np.flatnonzero(np.diff(user[order])) + 1
    return np.split(order, bounds)


def _finish(ds: Dataset, method: str, seed: int, parts: list[np.ndarray]) -> Split:
    train, valid, test = (np.sort(p.astype(np.int64)) for p in parts)
    in_train = np.zeros(ds.n_users, dtype=bool)
    in_train[ds.interactions.user[train]] = True
    dropped = {}
    kept = []
    for name, idx in (("valid", valid), ("test", test)):
        ok = in_train[ds.interactions.user[idx]]
        dropped[f"{name}_users_without_train"] = int((~ok).sum())
        kept.append(idx[ok])
    return Split(method, seed, train, kept[0], kept[1], ds.fingerprint(), dropped)


def split_mmrec(
    ds: Dataset, seed: int = 0, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> Split:
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for idx in _by_user(ds.interactions.user):
        idx = rng.permutation(idx)
        n = len(idx)
        if n < 10:
            n_test, n_valid = min(1, n), min(1, max(0, n - 1))
        else:
            n_valid = int(round(n * ratios[1]))
            n_test = int(round(n * ratios[2]))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_valid])
        parts[0].append(idx[n_test + n_valid :])
    return _finish(
        ds, "mmrec", seed, [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]
    )


def _timestamps(ds: Dataset, method: str) -> np.ndarray:
    if ds.interactions.timestamp is None:
        raise ValueError(f"{ds.path}: split '{method}' needs timestamps, and this dataset has none")
    return ds.interactions.timestamp


def split_leave_last_out(ds: Dataset, seed: int = 0) -> Split:
    ts = _timestamps(ds, "loo")
    parts: list[list[np.ndarray]] = [[], [], []]
    for idx in _by_user(ds.interactions.user):
        idx = idx[np.lexsort((idx, ts[idx]))]  # by time, ties by row: deterministic
        n = len(idx)
        n_test = 1 if n >= 2 else 0
        n_valid = 1 if n >= 3 else 0
        parts[0].append(idx[: n - n_test - n_valid])
        parts[1].append(idx[n - n_test - n_valid : n - n_test])
        parts[2].append(idx[n - n_test :])
    return _finish(ds, "loo", seed, [np.concatenate(p) for p in parts])


def split_global_time(
    ds: Dataset, seed: int = 0, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> Split:
    ts = _timestamps(ds, "time")
    order = np.lexsort((np.arange(len(ts)), ts))
    a = int(round(len(order) * ratios[0]))
    b = int(round(len(order) * (ratios[0] + ratios[1])))
    return _finish(ds, "time", seed, [order[:a], order[a:b], order[b:]])


def split_user_time(
    ds: Dataset, seed: int = 0, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> Split:
    ts = _timestamps(ds, "user_time")
    parts: list[list[np.ndarray]] = [[], [], []]
    for idx in _by_user(ds.interactions.user):
        idx = idx[np.lexsort((idx, ts[idx]))]  # by time, ties by row: deterministic
        n = len(idx)
        n_test = max(1 if n >= 2 else 0, int(round(n * ratios[2])))
        n_valid = max(1 if n >= 3 else 0, int(round(n * ratios[1])))
        parts[0].append(idx[: n - n_test - n_valid])
        parts[1].append(idx[n - n_test - n_valid : n - n_test])
        parts[2].append(idx[n - n_test :])
    return _finish(ds, "user_time", seed, [np.concatenate(p) for p in parts])


def split_given(ds: Dataset, seed: int = 0) -> Split:
    label = ds.interactions.label
    if label is None:
        raise ValueError(
            f"{ds.path}: split 'given' needs split labels in the source (x_label, JSON files or a split column)"
        )
    return _finish(ds, "given", seed, [np.flatnonzero(label == k) for k in range(len(SPLIT_NAMES))])


def make_split(ds: Dataset, method: str | None = None, seed: int = 0) -> Split:
    """``method=None`` uses the source's own split when it has one, else MMRec's protocol."""
    method = method or ("given" if ds.interactions.label is not None else "mmrec")
    fns = {
        "mmrec": split_mmrec,
        "loo": split_leave_last_out,
        "time": split_global_time,
        "user_time": split_user_time,
        "given": split_given,
    }
    if method not in fns:
        raise ValueError(f"unknown split method {method!r}; choose from {', '.join(METHODS)}")
    return fns[method](ds, seed)
