"""A loaded catalogue written out in MovieLens-latest layout (``movies.csv``, ``ratings.csv``,
``links.csv``, ``posters/<movieId>.jpg``): how the pipeline's tests and benchmarks get a
catalogue in a format people download, with the structure of a generated one."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from metamodal.data.dataset import Dataset
from metamodal.data.modalities import ImageModality, TextModality


def write_movielens_latest(ds: Dataset, out: str | Path) -> Path:
    """Items become movies 1..n (text as the title, no genres), users 1..m; an item's image
    becomes its poster (re-encoded as JPEG; an unreadable one copied as it is, so the loader
    meets it); items without text or image keep the gap."""
    out = Path(out)
    (out / "posters").mkdir(parents=True, exist_ok=True)
    text = next((m for m in ds.modalities.values() if isinstance(m, TextModality)), None)
    image = next((m for m in ds.modalities.values() if isinstance(m, ImageModality)), None)
    with open(out / "movies.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        for i in range(ds.n_items):
            title = text.texts[i] if text is not None and text.present[i] else ""
            w.writerow([i + 1, title, "(no genres listed)"])
    with open(out / "links.csv", "w", newline="") as f:
        csv.writer(f).writerows([["movieId", "imdbId", "tmdbId"], *([i + 1, "", ""] for i in range(ds.n_items))])
    inter = ds.interactions
    rating = inter.rating if inter.rating is not None else np.full(len(inter), 4.0)
    stamp = inter.timestamp if inter.timestamp is not None else np.arange(len(inter))
    with open(out / "ratings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows(zip(inter.user + 1, inter.item + 1, np.round(rating * 2) / 2, stamp, strict=True))
    if image is not None:
        _posters(image, out / "posters")
    return out


def _posters(image: ImageModality, posters: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    for i, (path, present) in enumerate(zip(image.paths, image.present, strict=True)):
        if not present or path is None:
            continue
        target = posters / f"{i + 1}.jpg"
        try:
            with Image.open(path) as im:
                im.convert("RGB").save(target, quality=90)
        except (OSError, UnidentifiedImageError):
            shutil.copyfile(path, target)
