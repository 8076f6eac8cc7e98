"""The LATTICE / MMHCL JSON split: ``5-core/{train,val,test}.json`` map a user id to a list of
item ids (both dense indices). ``item2id.json`` / ``user2id.json`` give raw ids where present;
any ``.npy`` beside them is a feature modality. Amazon Baby's image URLs are kept as metadata:
nothing is fetched at run time, so they are not an image modality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from metamodal.data.dataset import Dataset, Interactions, drop_duplicates
from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.loaders.common import feature_files, load_feature_matrix, read_table
from metamodal.data.modalities import Modality

FILES = (("train.json", 0), ("val.json", 1), ("test.json", 2))


def split_dir(path: Path) -> Path | None:
    for d in (path / "5-core", path):
        if all((d / f).is_file() for f, _ in FILES):
            return d
    return None


def detect(path: Path) -> bool:
    return path.is_dir() and split_dir(path) is not None


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", row=e.lineno) from None
    except OSError as e:
        raise DataError(path, f"unreadable: {e}") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected an object mapping user id -> list of item ids")
    return data


def _id_map(path: Path) -> list[str] | None:
    """``{raw: index}`` -> raw ids ordered by index, checked to be a dense range."""
    if not path.is_file():
        return None
    data = _read_json(path)
    out: list[str | None] = [None] * len(data)
    for raw, idx in data.items():
        if not isinstance(idx, int) or not 0 <= idx < len(data) or out[idx] is not None:
            raise DataError(
                path, f"id {idx!r} is not a unique index in 0..{len(data) - 1}", field=str(raw)
            )
        out[idx] = str(raw)
    return out  # type: ignore[return-value]


def load(path: Path) -> Dataset:
    report = LoadReport()
    d = split_dir(path)
    if d is None:
        raise DataError(path, "no 5-core/{train,val,test}.json")
    root = d.parent if d.name == "5-core" else d
    user, item, labels = _split_files(d)
    item_raw = _id_map(root / "item2id.json")
    user_raw = _id_map(root / "user2id.json")
    n_items = len(item_raw) if item_raw else int(item.max(initial=-1)) + 1
    n_users = len(user_raw) if user_raw else int(user.max(initial=-1)) + 1
    for arr, n, what in ((item, n_items, "item"), (user, n_users, "user")):
        if len(arr) and arr.max() >= n:
            raise DataError(root / f"{what}2id.json", f"{what} id {int(arr.max())} is out of range "
                            f"0..{n - 1}", field=what)  # fmt: skip
    inter = drop_duplicates(Interactions(user, item, label=labels), report, str(d))
    modalities: dict[str, Modality] = {}
    for p in feature_files(root):
        mod = load_feature_matrix(p, n_items, report)
        modalities[mod.name] = mod
    return Dataset(
        name=root.name,
        format="lattice",
        path=str(path),
        user_ids=np.array(user_raw if user_raw else np.arange(n_users)),
        item_ids=np.array(item_raw if item_raw else np.arange(n_items)),
        interactions=inter,
        modalities=modalities,
        item_meta=_image_urls(root, n_items, report),
        report=report,
    )


def _split_files(d: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, split label) per interaction of ``train/val/test.json`` ({user: [items]})."""
    users, items, labels = [], [], []
    for fname, label in FILES:
        for row, (u, its) in enumerate(_read_json(d / fname).items(), start=1):
            try:
                uid = int(u)
            except ValueError:
                raise DataError(d / fname, f"user id {u!r} is not an integer", row=row, field="user") from None
            if not isinstance(its, list) or not all(isinstance(i, int) and i >= 0 for i in its):
                raise DataError(d / fname, "expected a list of non-negative integer item ids",
                                row=row, field=str(u))  # fmt: skip
            users.extend([uid] * len(its))
            items.extend(its)
            labels.extend([label] * len(its))
    return (np.array(users, dtype=np.int64), np.array(items, dtype=np.int64),
            np.array(labels, dtype=np.int8))  # fmt: skip


def _image_urls(root: Path, n_items: int, report: LoadReport) -> pd.DataFrame | None:
    """Item metadata from an image-URL table, when there is one: URLs only, never fetched."""
    url_csv = next(iter(sorted(root.glob("*url*.csv"))), None)
    if url_csv is None:
        return None
    urls = read_table(url_csv)
    if "itemID" not in urls.columns:
        return None
    meta = pd.DataFrame({"item": np.arange(n_items)}).merge(
        urls.rename(columns={"itemID": "item"}), on="item", how="left"
    )
    report.note(
        f"{url_csv.name}: {int(meta.iloc[:, -1].notna().sum())} items have image URLs only; "
        "nothing is fetched at run time, so there is no image modality"
    )
    return meta
