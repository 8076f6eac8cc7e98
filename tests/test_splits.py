"""Splits: MMRec's protocol, leave-last-out, global time, the source's own; saved and reloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metamodal.data import Dataset, Interactions
from metamodal.data.splits import Split, make_split


def toy(counts: list[int], n_items: int = 50, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u, c in enumerate(counts):
        users += [u] * c
        items += list(rng.choice(n_items, c, replace=False))
        ts += list(rng.permutation(c) + 100 * u)
    return Dataset(
        "toy",
        "test",
        "toy",
        np.arange(len(counts)),
        np.arange(n_items),
        Interactions(users, items, timestamp=ts),
    )


def test_mmrec_protocol() -> None:
    ds = toy([30, 20, 9, 3, 2, 1])
    sp = make_split(ds, "mmrec", seed=1)
    parts = sp.parts()
    allidx = np.concatenate(list(parts.values()))
    assert len(np.unique(allidx)) == len(allidx)  # disjoint
    u = ds.interactions.user
    per = {k: np.bincount(u[v], minlength=6) for k, v in parts.items()}
    assert per["valid"].tolist()[:4] == [3, 2, 1, 1] and per["test"].tolist()[:4] == [3, 2, 1, 1]
    assert per["train"].tolist()[:4] == [24, 16, 7, 1]
    # a user with 2 interactions has none left for train: its valid/test are dropped, and counted
    assert per["train"][4] == 0 and per["test"][4] == 0 and per["valid"][4] == 0
    assert sp.dropped["test_users_without_train"] == 2  # users 4 and 5
    assert sp.dropped["valid_users_without_train"] == 1
    assert len(allidx) + 3 == ds.n_interactions
    assert np.array_equal(make_split(ds, "mmrec", seed=1).test, sp.test)
    assert not np.array_equal(make_split(ds, "mmrec", seed=2).test, sp.test)


def test_leave_last_out_by_time() -> None:
    ds = toy([5, 4, 2])
    sp = make_split(ds, "loo")
    ts, u = ds.interactions.timestamp, ds.interactions.user
    for user in range(2):
        mine = u == user
        assert ts[sp.test][u[sp.test] == user].item() == ts[mine].max()
        assert ts[sp.valid][u[sp.valid] == user].item() == np.sort(ts[mine])[-2]
    assert (u[sp.valid] == 2).sum() == 0 and (u[sp.test] == 2).sum() == 1


def test_global_time() -> None:
    ds = toy([10] * 10)
    ds.interactions.timestamp = np.random.default_rng(0).permutation(
        100
    )  # users interleaved in time
    sp = make_split(ds, "time")
    ts = ds.interactions.timestamp
    assert ts[sp.train].max() < ts[np.concatenate([sp.valid, sp.test])].min()
    assert len(sp.train) == 80 and len(sp.valid) + len(sp.test) == 20
    # users who only appear after the cut have nothing to be ranked by: dropped, and counted
    late = toy([10] * 10)  # user u's interactions all at 100*u..100*u+9
    sp = make_split(late, "time")
    assert len(sp.test) == 0 and sp.dropped["test_users_without_train"] == 10


def test_given_and_errors() -> None:
    ds = toy([4, 4])
    with pytest.raises(ValueError, match="needs split labels"):
        make_split(ds, "given")
    ds.interactions.timestamp = None
    with pytest.raises(ValueError, match="needs timestamps"):
        make_split(ds, "loo")
    with pytest.raises(ValueError, match="unknown split method"):
        make_split(ds, "random")
    ds.interactions.label = np.array([0, 0, 1, 2, 0, 0, 2, 2], dtype=np.int8)
    sp = make_split(ds)  # defaults to the source's own labels
    assert sp.method == "given" and len(sp.test) == 3


def test_save_load_roundtrip_and_fingerprint(tmp_path: Path) -> None:
    ds = toy([12, 11, 10])
    sp = make_split(ds, "mmrec", seed=5)
    sp.save(tmp_path)
    back = Split.load(tmp_path, ds)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(sp.parts().values(), back.parts().values(), strict=True)
    )
    with pytest.raises(ValueError, match="made for other data"):
        Split.load(tmp_path, toy([12, 11, 10], seed=9))


def test_per_user_time_split_keeps_each_users_latest_for_test() -> None:
    ds = toy([30, 20, 3, 1])
    sp = make_split(ds, "user_time")
    ts, u = ds.interactions.timestamp, ds.interactions.user
    for user, (n_tr, n_va, n_te) in enumerate([(24, 3, 3), (16, 2, 2), (1, 1, 1)]):
        tr, va, te = (ts[p][u[p] == user] for p in (sp.train, sp.valid, sp.test))
        assert (len(tr), len(va), len(te)) == (n_tr, n_va, n_te)
        assert tr.max() < va.min() and va.max() < te.min()  # strictly by time, per user
    assert (u[sp.train] == 3).sum() == 1 and (u[sp.test] == 3).sum() == 0  # nothing to hold out
