"""MovieLens-100K (``u.data``, ``u.item``, ``u.user``) with ``items.csv`` overviews as the
``text`` modality and ``posters/<movie_id>.jpg`` as the ``image`` modality (ml100k-mm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metamodal.data.dataset import Dataset, Interactions, drop_duplicates
from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.loaders.common import integer_column, read_table
from metamodal.data.modalities import ImageModality, Modality, TextModality

GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def detect(path: Path) -> bool:
    return path.is_dir() and (path / "u.data").is_file()


def load(path: Path) -> Dataset:
    report = LoadReport()
    udata = path / "u.data"
    df = read_table(udata, sep="\t", header=None, names=["user", "item", "rating", "timestamp"])
    raw_user = integer_column(df, udata, "user", min_value=1)
    raw_item = integer_column(df, udata, "item", min_value=1)
    item_ids, meta = _items(path / "u.item", raw_item, report)
    uuser = path / "u.user"
    user_ids = (
        integer_column(read_table(uuser, sep="|", header=None), uuser, 0, min_value=1)
        if uuser.is_file()
        else np.unique(raw_user)
    )
    user_ids, item_ids = np.sort(user_ids), np.sort(item_ids)
    meta = meta.set_index("movie_id").loc[item_ids].reset_index()
    uidx = _positions(raw_user, user_ids, udata, "user")
    iidx = _positions(raw_item, item_ids, udata, "item")
    ts = integer_column(df, udata, "timestamp")
    found = Interactions(uidx, iidx, df["rating"].to_numpy(np.float32), ts)
    inter = drop_duplicates(found, report, str(udata))
    modalities: dict[str, Modality] = {}
    if (items_csv := path / "items.csv").is_file():
        modalities["text"] = _overviews(items_csv, item_ids, report)
    if (images := poster_images(path, item_ids)) is not None:
        modalities["image"] = images
    return Dataset(
        name=path.name,
        format="movielens",
        path=str(path),
        user_ids=user_ids,
        item_ids=item_ids,
        interactions=inter,
        modalities=modalities,
        item_meta=meta,
        report=report,
    )


def poster_images(path: Path, item_ids: np.ndarray) -> ImageModality | None:
    """``posters/<movie id>.jpg`` per item (absent files count as missing), when the folder exists."""
    posters = path / "posters"
    if not posters.is_dir():
        return None
    return ImageModality.from_paths([str(posters / f"{int(i)}.jpg") for i in item_ids])


def _items(uitem: Path, raw_item: np.ndarray, report: LoadReport) -> tuple[np.ndarray, pd.DataFrame]:
    """(item ids, metadata: title, release, genres) from ``u.item``; without it, the items
    ``u.data`` names (noted in the report)."""
    if not uitem.is_file():
        report.note("u.item missing: items are those seen in u.data")
        item_ids = np.unique(raw_item)
        return item_ids, pd.DataFrame({"movie_id": item_ids})
    items = read_table(uitem, sep="|", header=None, encoding="latin-1")
    if items.shape[1] < 5:
        raise DataError(uitem, f"expected at least 5 '|'-separated fields, got {items.shape[1]}")
    item_ids = integer_column(items, uitem, 0, min_value=1)
    meta = pd.DataFrame({"movie_id": item_ids, "title": items[1].astype(str), "release": items[2]})
    if items.shape[1] >= 5 + len(GENRES):
        flags = items.iloc[:, 5 : 5 + len(GENRES)].to_numpy(dtype=bool)
        meta["genres"] = ["|".join(g for g, f in zip(GENRES, row, strict=True) if f) for row in flags]
    return item_ids, meta


def _positions(raw: np.ndarray, ids: np.ndarray, udata: Path, what: str) -> np.ndarray:
    """Each raw id's position in the sorted ``ids``; an id not there fails naming its row."""
    idx = np.searchsorted(ids, raw)
    bad = (idx >= len(ids)) | (ids[np.minimum(idx, len(ids) - 1)] != raw)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(udata, f"{what} id {raw[row]} is not in u.{what}", row=row + 1, field=what)
    return idx


def _overviews(items_csv: Path, item_ids: np.ndarray, report: LoadReport) -> TextModality:
    txt = read_table(items_csv, dtype={"overview": str}, keep_default_na=False)
    if "movie_id" not in txt.columns or "overview" not in txt.columns:
        raise DataError(items_csv, "needs columns movie_id and overview", field="overview")
    mid = integer_column(txt, items_csv, "movie_id", min_value=1)
    unknown = ~np.isin(mid, item_ids)
    report.skip(
        "items.csv row for an unknown movie_id",
        f"{items_csv} movie_id {mid[unknown][0]}" if unknown.any() else "",
        int(unknown.sum()),
    )
    by_id = dict(zip(mid, txt["overview"], strict=True))
    return TextModality.from_texts([by_id.get(int(i)) for i in item_ids])
