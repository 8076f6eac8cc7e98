"""Each format loads into one Dataset; bad input fails naming file, row and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metamodal.data import DataError, detect_format, load_dataset
from tests.conftest import SHARED_DATA


def write_mmrec(
    d: Path, n_users: int = 5, n_items: int = 6, feats: dict[str, np.ndarray] | None = None
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = ["userID\titemID\trating\tx_label"]
    for u in range(n_users):
        for k, i in enumerate(sorted({u % n_items, (u + 1) % n_items, (u + 2) % n_items})):
            rows.append(f"{u}\t{i}\t1\t{min(k, 2)}")
    (d / f"{d.name}.inter").write_text("\n".join(rows) + "\n")
    for name, arr in (feats or {}).items():
        np.save(d / f"{name}.npy", arr)
    return d


def test_mmrec_loads_ids_labels_and_features(tmp_path: Path) -> None:
    feats = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    feats[2] = 0.0  # an all-zero row: absent
    d = write_mmrec(tmp_path / "toy", feats={"all-MiniLM-L6-v2": feats, "vggish": np.ones((6, 3))})
    assert detect_format(d) == "mmrec"
    ds = load_dataset(d)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (5, 6, 15)
    assert ds.summary()["splits"] == {"train": 5, "valid": 5, "test": 5}
    text = ds.modalities["all-MiniLM-L6-v2"]
    assert text.kind == "text" and text.n_present == 5 and not text.present[2]
    assert (
        ds.modalities["vggish"].kind == "audio"
        and ds.modalities["vggish"].features.dtype == np.float32
    )


def test_mmrec_feature_rows_must_align(tmp_path: Path) -> None:
    d = write_mmrec(tmp_path / "toy", feats={"img": np.ones((4, 2))})  # itemID reaches 5
    with pytest.raises(DataError, match=r"img\.npy.*do not align"):
        load_dataset(d)


def test_mmrec_missing_column_and_bad_value(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "bad.inter").write_text("userID\titem\n0\t1\n")
    with pytest.raises(DataError, match=r"bad\.inter, field 'itemID': missing column"):
        load_dataset(d)
    (d / "bad.inter").write_text("userID\titemID\n0\t1\n1\tx\n")
    with pytest.raises(DataError, match=r"bad\.inter, row 2, field 'itemID': not an integer"):
        load_dataset(d)
    (d / "bad.inter").write_text("userID\titemID\tx_label\n0\t1\t0\n1\t1\t7\n")
    with pytest.raises(DataError, match=r"row 2, field 'x_label'"):
        load_dataset(d)


def test_duplicates_are_counted_not_silently_dropped(tmp_path: Path) -> None:
    d = tmp_path / "dup"
    d.mkdir()
    (d / "dup.inter").write_text("userID\titemID\n0\t1\n0\t1\n1\t0\n")
    ds = load_dataset(d)
    assert ds.n_interactions == 2
    assert ds.report.skipped["duplicate_interaction"] == 1
    assert "row 2" in ds.report.examples["duplicate_interaction"]


def write_lattice(d: Path) -> Path:
    core = d / "5-core"
    core.mkdir(parents=True)
    (core / "train.json").write_text(json.dumps({"0": [0, 1], "1": [2], "2": [3, 0]}))
    (core / "val.json").write_text(json.dumps({"0": [2], "1": [], "2": [1]}))
    (core / "test.json").write_text(json.dumps({"0": [3], "1": [0], "2": [2]}))
    (d / "item2id.json").write_text(json.dumps({"A": 0, "B": 1, "C": 2, "D": 3, "E": 4}))
    return d


def test_lattice_json(tmp_path: Path) -> None:
    d = write_lattice(tmp_path / "baby")
    assert detect_format(d) == "lattice"
    ds = load_dataset(d)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 5, 10)
    assert list(ds.item_ids) == ["A", "B", "C", "D", "E"]
    assert ds.summary()["splits"] == {"train": 5, "valid": 2, "test": 3}
    (d / "5-core" / "test.json").write_text(json.dumps({"0": [9]}))
    with pytest.raises(DataError, match="item id 9 is out of range"):
        load_dataset(d)
    (d / "5-core" / "val.json").write_text('{"0": [1,')
    with pytest.raises(DataError, match=r"val\.json, row 1: invalid JSON"):
        load_dataset(d)


def write_movielens(d: Path) -> Path:
    from PIL import Image

    d.mkdir(parents=True)
    (d / "u.data").write_text("1\t10\t5\t100\n2\t10\t3\t90\n1\t20\t4\t110\n2\t30\t4\t120\n")
    genres = "|".join(["0"] * 19)
    (d / "u.item").write_text(
        "\n".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{genres}" for i in (10, 20, 30))
        + "\n",
        encoding="latin-1",
    )
    (d / "items.csv").write_text(
        'movie_id,title,year,genres,overview\n10,a,1995,x,"A film."\n20,b,1995,x,No overview found.\n30,c,1995,x,\n'
    )
    (d / "posters").mkdir()
    Image.new("RGB", (8, 8)).save(d / "posters" / "10.jpg")
    Image.new("RGB", (8, 8)).save(d / "posters" / "30.jpg")
    return d


def test_movielens_with_text_and_posters(tmp_path: Path) -> None:
    d = write_movielens(tmp_path / "ml")
    assert detect_format(d) == "movielens"
    ds = load_dataset(d)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 4)
    assert ds.modalities["text"].present.tolist() == [
        True,
        False,
        False,
    ]  # placeholder and empty are missing
    assert ds.modalities["image"].present.tolist() == [True, False, True]
    assert ds.interactions.timestamp.tolist() == [100, 90, 110, 120]
    (d / "u.data").write_text("1\t10\t5\t100\n2\t99\t3\t90\n")
    with pytest.raises(
        DataError, match=r"u\.data, row 2, field 'item': item id 99 is not in u\.item"
    ):
        load_dataset(d)


def test_generic_format_and_errors(tmp_path: Path) -> None:
    d = tmp_path / "cat"
    d.mkdir()
    items = [
        {"id": "a", "text": "red mug", "image": "img/a.png"},
        {"id": "b", "text": " ", "image": "http://x/b.jpg"},
        {"id": "c", "text": "lamp", "price": 3.0},
    ]
    (d / "items.jsonl").write_text("\n".join(json.dumps(r) for r in items) + "\n")
    (d / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(d / "img" / "a.png")
    (d / "interactions.csv").write_text(
        "user_id,item_id,rating,timestamp,split\nu1,a,5,1,train\nu2,c,4,2,test\nu1,b,3,3,valid\n"
    )
    ds = load_dataset(d)
    assert ds.format == "generic" and (ds.n_users, ds.n_items) == (2, 3)
    assert ds.modalities["text"].present.tolist() == [True, False, True]
    assert ds.modalities["image"].present.tolist() == [True, False, False]
    assert ds.report.skipped["image given as a URL (not fetched)"] == 1
    assert ds.interactions.label.tolist() == [0, 2, 1]
    (d / "interactions.csv").write_text("user_id,item_id\nu1,a\nu2,zz\n")
    with pytest.raises(
        DataError, match=r"interactions\.csv, row 2, field 'item_id': unknown item id 'zz'"
    ):
        load_dataset(d)
    (d / "items.jsonl").write_text('{"id": "a"}\n{"id": "b"\n')
    with pytest.raises(DataError, match=r"items\.jsonl, row 2: invalid JSON"):
        load_dataset(d)
    (d / "items.jsonl").write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(DataError, match=r"row 2, field 'id': duplicate item id 'a'"):
        load_dataset(d)
    (d / "catalog.json").write_text(json.dumps({"text_feilds": ["text"]}))
    with pytest.raises(DataError, match=r"catalog\.json, field 'text_feilds'"):
        load_dataset(d)


def test_unknown_format_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unrecognised dataset format"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="real data not on this machine")
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lfm2k", (1858, 1425, 56345)),
        ("amazon-baby", (19445, 7050, 160792)),
        ("ml100k-mm", (943, 1682, 100000)),
    ],
)
def test_real_datasets_counts(name: str, expected: tuple[int, int, int]) -> None:
    ds = load_dataset(SHARED_DATA / name)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == expected
    if name == "ml100k-mm":
        assert ds.modalities["image"].n_present == 1663


def test_generic_parquet_and_features(tmp_path: Path) -> None:
    import pandas as pd

    d = tmp_path / "pq"
    d.mkdir()
    pd.DataFrame(
        {"id": [1, 2, 3], "title": ["a", "b", ""], "description": ["x", "", ""]}
    ).to_parquet(d / "items.parquet")
    pd.DataFrame({"uid": ["u", "v", "u"], "iid": [3, 1, 2], "ts": [5, 6, 7]}).to_parquet(
        d / "interactions.parquet"
    )
    np.save(d / "clip.npy", np.eye(3, 4, dtype=np.float32))
    (d / "catalog.json").write_text(
        json.dumps(
            {
                "text_fields": ["title", "description"],
                "image_field": None,
                "user_field": "uid",
                "item_field": "iid",
                "timestamp_field": "ts",
                "features": {"clip": {"path": "clip.npy", "kind": "image"}},
            }
        )
    )
    ds = load_dataset(d)
    assert ds.modalities["text"].texts == ["a. x", "b", None]
    assert ds.interactions.item.tolist() == [2, 0, 1] and ds.interactions.timestamp.tolist() == [
        5,
        6,
        7,
    ]
    assert ds.modalities["clip"].kind == "image" and ds.modalities["clip"].dim == 4
    np.save(d / "clip.npy", np.eye(2, 4, dtype=np.float32))
    with pytest.raises(DataError, match=r"clip\.npy, row 3: feature rows do not align"):
        load_dataset(d)
