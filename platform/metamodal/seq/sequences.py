"""Users' item sequences cut by a leave-last-out split (``data.splits.split_leave_last_out``):
the training sequence, then one valid and one test item. A valid target is predicted from the
training sequence, a test target from the training sequence plus the valid item — the history a
deployed model would have seen by then."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metamodal.data import Dataset
from metamodal.data.splits import Split

PARTS = ("valid", "test")


def in_time_order(ds: Dataset, idx: np.ndarray) -> list[np.ndarray]:
    """Items of ``idx`` per user, ordered by (timestamp, row)."""
    inter = ds.interactions
    ts = inter.timestamp if inter.timestamp is not None else np.arange(len(inter))
    idx = idx[np.lexsort((idx, ts[idx], inter.user[idx]))]
    users = inter.user[idx]
    bounds = np.searchsorted(users, np.arange(ds.n_users + 1))
    return [inter.item[idx[bounds[u] : bounds[u + 1]]] for u in range(ds.n_users)]


@dataclass
class Sequences:
    """``train[u]``: user u's training items in time order; ``target[part][u]``: the next item
    (-1: none); ``seen[u]``: every item u interacted with (sampled negatives avoid them)."""

    n_items: int
    train: list[np.ndarray]
    target: dict[str, np.ndarray]
    seen: list[np.ndarray]

    @classmethod
    def from_split(cls, ds: Dataset, split: Split) -> Sequences:
        if split.method != "loo":
            raise ValueError(f"sequential recommendation needs the leave-last-out split ('loo'), got '{split.method}'")
        train = in_time_order(ds, split.train)
        target = {}
        for part in PARTS:
            t = np.full(ds.n_users, -1, np.int64)
            idx = getattr(split, part)
            t[ds.interactions.user[idx]] = ds.interactions.item[idx]
            target[part] = t
        seen = [np.unique(np.concatenate([train[u], [target[p][u] for p in PARTS if target[p][u] >= 0]]))
                .astype(np.int64) for u in range(ds.n_users)]  # fmt: skip
        return cls(ds.n_items, train, target, seen)

    def users(self, part: str) -> np.ndarray:
        """Users with a target in ``part`` and at least one item before it."""
        return np.flatnonzero((self.target[part] >= 0) & np.array([len(t) > 0 for t in self.train]))

    def history(self, part: str, u: int) -> np.ndarray:
        if part == "valid":
            return self.train[u]
        v = self.target["valid"][u]
        return np.concatenate([self.train[u], [v]]) if v >= 0 else self.train[u]

    def windows(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Training windows (inputs, next items) [n, max_len], item index + 1, 0 = padding on
        the left: every training transition appears once, in windows of at most ``max_len``
        ending at the sequence's end and every ``max_len`` before it."""
        xs, ys = [], []
        for seq in self.train:
            for end in range(len(seq), 1, -max_len):
                part = seq[max(0, end - max_len - 1) : end] + 1
                x, y = np.zeros(max_len, np.int64), np.zeros(max_len, np.int64)
                x[max_len - len(part) + 1 :], y[max_len - len(part) + 1 :] = part[:-1], part[1:]
                xs.append(x)
                ys.append(y)
        if not xs:
            raise ValueError("no user has two training items: nothing to learn a next item from")
        return np.stack(xs), np.stack(ys)


def padded(histories: list[np.ndarray], max_len: int) -> np.ndarray:
    """The last ``max_len`` items of each history, item index + 1, left-padded with 0."""
    out = np.zeros((len(histories), max_len), np.int64)
    for r, h in enumerate(histories):
        h = h[-max_len:]
        if len(h):
            out[r, max_len - len(h) :] = h + 1
    return out
