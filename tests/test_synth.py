"""The synthetic shop: deterministic, loadable, with the planted structure it documents."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from metamodal.data import load_dataset
from metamodal.data.synth import SynthConfig, generate


def test_deterministic_by_seed(tmp_path: Path, small_shop: Path) -> None:
    again = generate(
        tmp_path / "again",
        SynthConfig(n_items=300, n_users=240, seed=3, image_size=32),
        progress=False,
    )
    for f in ("items.jsonl", "interactions.csv", "planted/users.csv", "images/P00007.jpg"):
        assert filecmp.cmp(small_shop / f, again / f, shallow=False), f
    other = generate(
        tmp_path / "other",
        SynthConfig(n_items=300, n_users=240, seed=4, image_size=32),
        progress=False,
    )
    assert not filecmp.cmp(
        small_shop / "interactions.csv", other / "interactions.csv", shallow=False
    )


def test_loads_with_missing_and_corrupt_inputs(small_shop: Path) -> None:
    ds = load_dataset(small_shop)
    planted = pd.read_csv(small_shop / "planted" / "items.csv")
    assert ds.format == "generic" and ds.n_items == 300 and ds.n_users == 240
    assert ds.modalities["image"].present.tolist() == (planted["image_state"] != "absent").tolist()
    assert ds.modalities["text"].present.tolist() == (planted["text_state"] == "ok").tolist()
    corrupt = planted.index[planted["image_state"] == "corrupt"]
    ok = planted.index[planted["image_state"] == "ok"][0]
    Image.open(ds.modalities["image"].paths[ok]).load()
    for i in corrupt:  # truncated JPEGs fail to decode, as the extraction job must notice
        try:
            Image.open(ds.modalities["image"].paths[i]).load()
            raise AssertionError(f"item {i} should be corrupt")
        except OSError:
            pass


def test_text_never_mentions_colour_or_pattern(small_shop: Path) -> None:
    from metamodal.data.synth_images import COLOURS, PATTERNS

    ds = load_dataset(small_shop)
    words = " ".join(t for t in ds.modalities["text"].texts if t).lower()
    for w in [*COLOURS, *PATTERNS]:
        assert f" {w} " not in f" {words} ", w


def test_planted_tastes_show_in_interactions(small_shop: Path) -> None:
    """Each user kind over-consumes the attribute its modality carries, well above chance."""
    items = pd.read_csv(small_shop / "planted" / "items.csv").set_index("id")
    users = pd.read_csv(small_shop / "planted" / "users.csv").set_index("user_id")
    inter = pd.read_csv(small_shop / "interactions.csv")
    j = inter.join(users, on="user_id").join(items, on="item_id", rsuffix="_item")
    share = {
        "visual": (j["colour"] == j["colour_item"])[j["kind"] == "visual"].mean(),  # chance 1/8
        "textual": (j["material"] == j["material_item"])[
            j["kind"] == "textual"
        ].mean(),  # chance 1/6
        "collaborative": (
            (j["collection"] == j["collection_a"]) | (j["collection"] == j["collection_b"])
        )[j["kind"] == "collaborative"].mean(),  # chance ~2/40
    }
    assert share["visual"] > 0.5 and share["textual"] > 0.5 and share["collaborative"] > 0.4, share
    # and a visual user's colour preference is invisible to textual users' choices
    assert (j["colour"] == j["colour_item"])[j["kind"] == "textual"].mean() < 0.3
    assert np.isclose(users["kind"].value_counts(normalize=True), 1 / 3, atol=0.01).all()


def test_a_shop_smaller_than_a_long_history_still_generates(tmp_path: Path) -> None:
    """Benchmarks' edge cases want catalogues of a few dozen items; a user's history is then
    capped at half the catalogue instead of failing to sample."""
    ds = load_dataset(generate(tmp_path, SynthConfig(n_items=40, n_users=30, seed=3, image_size=16),
                               progress=False))  # fmt: skip
    per_user = np.bincount(ds.interactions.user)
    assert len(per_user) == 30 and per_user.min() >= 5 and per_user.max() <= 20
