"""The MovieLens releases people download today, as they come:

- ``ml-latest``, ``ml-latest-small``, ``ml-25m``, ``ml-32m``: ``movies.csv`` (movieId, title,
  genres), ``ratings.csv`` (userId, movieId, rating, timestamp), optional ``tags.csv`` (userId,
  movieId, tag, timestamp) and ``links.csv`` (kept as metadata);
- ``ml-1m``: ``movies.dat`` and ``ratings.dat`` (``::``-separated, Latin-1).

Text is the title, the genres and the movie's tags (most used first); ``posters/<movieId>.jpg``
is the image where the folder exists. A rating of a movie ``movies`` does not list is skipped
and counted; a malformed id or timestamp is an error naming the file, row and field.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from metamodal.data.dataset import Dataset, Interactions, drop_duplicates
from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.loaders.common import float_column, integer_column, read_table, require_columns
from metamodal.data.loaders.movielens import poster_images
from metamodal.data.modalities import Modality, TextModality

MAX_TAGS = 20  # per movie in its text: the most used ones
NO_GENRES = "(no genres listed)"


def detect_latest(path: Path) -> bool:
    return path.is_dir() and (path / "movies.csv").is_file() and (path / "ratings.csv").is_file()


def detect_1m(path: Path) -> bool:
    return path.is_dir() and (path / "movies.dat").is_file() and (path / "ratings.dat").is_file()


def load_latest(path: Path) -> Dataset:
    movies_f, ratings_f = path / "movies.csv", path / "ratings.csv"
    movies = read_table(movies_f, dtype={"title": str, "genres": str}, keep_default_na=False)
    require_columns(movies, movies_f, ["movieId", "title", "genres"])
    ratings = read_table(ratings_f)
    require_columns(ratings, ratings_f, ["userId", "movieId", "rating", "timestamp"])
    tags = None
    if (tags_f := path / "tags.csv").is_file():
        tags = read_table(tags_f, dtype={"tag": str}, keep_default_na=False)
        require_columns(tags, tags_f, ["movieId", "tag"])
        tags = (tags_f, tags)
    meta = None
    if (links_f := path / "links.csv").is_file():
        meta = read_table(links_f, dtype=str, keep_default_na=False)
        require_columns(meta, links_f, ["movieId"])
    return _build(path, "movielens_latest", (movies_f, movies), (ratings_f, ratings), tags, meta)


def load_1m(path: Path) -> Dataset:
    movies_f, ratings_f = path / "movies.dat", path / "ratings.dat"
    movies = _read_dat(movies_f, ["movieId", "title", "genres"])
    ratings = _read_dat(ratings_f, ["userId", "movieId", "rating", "timestamp"])
    return _build(path, "movielens_1m", (movies_f, movies), (ratings_f, ratings), None, None)


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    """A ``::``-separated file; a row with another field count names its line."""
    try:
        lines = path.read_bytes().decode("latin-1").splitlines()
    except OSError as e:
        raise DataError(path, f"cannot read: {e}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != len(names):
            raise DataError(path, f"expected {len(names)} '::'-separated fields, got {len(parts)}", row=n)
        rows.append(parts)
    return pd.DataFrame(rows, columns=names)


def _build(path: Path, fmt: str, movies: tuple, ratings: tuple, tags: tuple | None,
           links: pd.DataFrame | None) -> Dataset:  # fmt: skip
    report = LoadReport()
    (movies_f, mv), (ratings_f, rt) = movies, ratings
    ids = integer_column(mv, movies_f, "movieId", min_value=0)
    if len(np.unique(ids)) != len(ids):
        dup = int(pd.Series(ids).duplicated().to_numpy().argmax())
        raise DataError(movies_f, f"movieId {ids[dup]} listed twice", row=dup + 1, field="movieId")
    order = np.argsort(ids)
    item_ids, mv = ids[order], mv.iloc[order].reset_index(drop=True)
    users = integer_column(rt, ratings_f, "userId", min_value=0)
    items = integer_column(rt, ratings_f, "movieId", min_value=0)
    ts = integer_column(rt, ratings_f, "timestamp", min_value=0)
    rating = float_column(rt, ratings_f, "rating").astype(np.float32)
    known = np.isin(items, item_ids)
    report.skip("rating of a movie not in " + movies_f.name,
                f"{ratings_f} row {int(np.flatnonzero(~known)[0]) + 1}" if (~known).any() else "",
                int((~known).sum()))  # fmt: skip
    users, items, ts, rating = users[known], items[known], ts[known], rating[known]
    user_ids = np.unique(users)
    found = Interactions(np.searchsorted(user_ids, users), np.searchsorted(item_ids, items), rating, ts)
    meta = pd.DataFrame({"movie_id": item_ids, "title": mv["title"].astype(str),
                         "genres": mv["genres"].astype(str)})  # fmt: skip
    if links is not None:
        meta = meta.merge(links.rename(columns={"movieId": "movie_id"}).assign(
            movie_id=lambda d: pd.to_numeric(d["movie_id"], errors="coerce")), on="movie_id", how="left")  # fmt: skip
    modalities: dict[str, Modality] = {"text": _texts(meta, _tags_by_movie(tags, item_ids, report))}
    if (images := poster_images(path, item_ids)) is not None:
        modalities["image"] = images
    return Dataset(name=path.name, format=fmt, path=str(path), user_ids=user_ids, item_ids=item_ids,
                   interactions=drop_duplicates(found, report, str(ratings_f)),
                   modalities=modalities, item_meta=meta, report=report)  # fmt: skip


def _tags_by_movie(tags: tuple | None, item_ids: np.ndarray, report: LoadReport) -> dict[int, list[str]]:
    """Each movie's tags, most used first; tags of unknown movies or empty ones are counted."""
    if tags is None:
        return {}
    tags_f, tg = tags
    mid = integer_column(tg, tags_f, "movieId", min_value=0)
    text = tg["tag"].astype(str).str.strip()
    unknown, empty = ~np.isin(mid, item_ids), (text == "").to_numpy()
    report.skip(f"tag of a movie not in movies ({tags_f.name})", f"{tags_f} row {int(np.argmax(unknown)) + 1}",
                int(unknown.sum()))  # fmt: skip
    report.skip(f"empty tag ({tags_f.name})", f"{tags_f} row {int(np.argmax(empty)) + 1}", int(empty.sum()))
    counts: dict[int, Counter] = {}
    for m, t in zip(mid[~unknown & ~empty], text[~unknown & ~empty].str.lower(), strict=True):
        counts.setdefault(int(m), Counter())[t] += 1
    return {m: [t for t, _ in c.most_common(MAX_TAGS)] for m, c in counts.items()}


def _texts(meta: pd.DataFrame, tags: dict[int, list[str]]) -> TextModality:
    out = []
    for mid, title, genres in zip(meta["movie_id"], meta["title"], meta["genres"], strict=True):
        parts = [title.strip()]
        if genres and genres != NO_GENRES:
            parts.append("Genres: " + ", ".join(genres.split("|")))
        if tags.get(int(mid)):
            parts.append("Tags: " + ", ".join(tags[int(mid)]))
        out.append(". ".join(p for p in parts if p) or None)
    return TextModality.from_texts(out)
