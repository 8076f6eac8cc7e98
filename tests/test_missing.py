"""Missingness masks: item-level rates, cold users/items, OOMA patterns; seeded and saved."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from metamodal.data import Dataset, FeatureModality, Interactions, TextModality
from metamodal.data.missing import (
    Missingness,
    MissingSpec,
    availability_patterns,
    evidence_sources,
    make_missingness,
    mask_for_pattern,
    ooma_patterns,
)
from metamodal.data.splits import make_split


def toy(n_users: int = 200, n_items: int = 400) -> Dataset:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_users), 12)
    items = np.concatenate([rng.choice(n_items, 12, replace=False) for _ in range(n_users)])
    text = TextModality.from_texts([f"item {i}" if i % 10 else "" for i in range(n_items)])
    audio = FeatureModality("audio", "audio", np.ones(n_items, bool), rng.normal(size=(n_items, 4)))
    return Dataset(
        "toy",
        "test",
        "toy",
        np.arange(n_users),
        np.arange(n_items),
        Interactions(users, items),
        {"text": text, "audio": audio},
    )


def test_rates_cold_and_determinism(tmp_path: Path) -> None:
    ds = toy()
    sp = make_split(ds, "mmrec")
    spec = MissingSpec(item_rates={"text": 0.5, "audio": 0.3}, cold_user_frac=0.2, cold_item_frac=0.1, seed=7)
    m = make_missingness(ds, sp, spec)
    assert not (m.present["text"] & ~ds.modalities["text"].present).any()  # never adds presence
    assert abs(m.present["audio"].mean() - 0.7) < 0.08
    assert abs(m.present["text"].sum() / ds.modalities["text"].n_present - 0.5) < 0.1
    train = m.train_indices(ds, sp)
    assert not m.cold_users[ds.interactions.user[train]].any()
    assert not m.cold_items[ds.interactions.item[train]].any()
    held = np.concatenate([sp.valid, sp.test])
    assert m.cold_users[
        ds.interactions.user[held]
    ].any()  # each cold slice has something to evaluate
    assert m.cold_users.sum() == round(0.2 * len(np.unique(ds.interactions.user[held])))
    again = make_missingness(ds, sp, spec)
    assert np.array_equal(again.present["text"], m.present["text"]) and np.array_equal(
        again.cold_items, m.cold_items
    )
    m.save(tmp_path)
    back = Missingness.load(tmp_path)
    assert np.array_equal(back.present["audio"], m.present["audio"]) and back.spec == spec


def test_bad_specs() -> None:
    ds = toy()
    sp = make_split(ds, "mmrec")
    with pytest.raises(ValueError, match="unknown modalities"):
        make_missingness(ds, sp, MissingSpec(item_rates={"image": 0.5}))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        MissingSpec(item_rates={"text": 1.5})


def test_patterns() -> None:
    ds = toy()
    src = evidence_sources(ds)
    assert src == ["graph", "text", "audio"]
    pats = availability_patterns(src)
    assert len(pats) == 7 and pats[:3] == ooma_patterns(src)
    masks = mask_for_pattern(ds, ("text",))
    assert masks["audio"].sum() == 0 and np.array_equal(
        masks["text"], ds.modalities["text"].present
    )
    with pytest.raises(ValueError, match="unknown modalities"):
        mask_for_pattern(ds, ("image",))


def test_dgmrec_protocol_counts_are_stratified_over_warm_and_cold_items(tmp_path: Path) -> None:
    """Two thirds of warm items and two thirds of cold items lose content: a quarter of them
    the first group only, a quarter the second only, half both; saved and reloaded alike."""
    base = toy()
    text = TextModality.from_texts([f"item {i}" for i in range(base.n_items)])
    ds = dataclasses.replace(base, modalities={"text": text, "audio": base.modalities["audio"]})
    miss = make_missingness(ds, make_split(ds, "mmrec", seed=0),
                            MissingSpec(cold_item_frac=0.3, seed=4, protocol="dgmrec"))  # fmt: skip
    lose_t, lose_a = ~miss.present["text"], ~miss.present["audio"]
    for stratum in (~miss.cold_items, miss.cold_items):
        hit = int(round(2 / 3 * stratum.sum()))
        q = hit // 4
        assert int((lose_t & ~lose_a & stratum).sum()) == q  # text only
        assert int((lose_a & ~lose_t & stratum).sum()) == q  # audio only
        assert int((lose_t & lose_a & stratum).sum()) == hit - 2 * q  # both
    assert miss.cold_items.sum() > 20  # both strata are populated
    miss.save(tmp_path)
    back = Missingness.load(tmp_path)
    assert back.spec.protocol == "dgmrec"
    np.testing.assert_array_equal(back.present["audio"], miss.present["audio"])


def test_dgmrec_protocol_refuses_rates_and_single_groups() -> None:
    with pytest.raises(ValueError, match="no item_rates"):
        MissingSpec(item_rates={"audio": 0.5}, protocol="dgmrec")
    with pytest.raises(ValueError, match="protocol"):
        MissingSpec(protocol="sometimes")
    base = toy()
    one = dataclasses.replace(base, modalities={"audio": base.modalities["audio"]})
    with pytest.raises(ValueError, match="two content groups"):
        make_missingness(one, make_split(one, "mmrec", seed=0), MissingSpec(protocol="dgmrec"))
