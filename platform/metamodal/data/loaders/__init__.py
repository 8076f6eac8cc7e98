"""Loader registry: one module per format, chosen by autodetection unless ``format`` is given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from metamodal.data.dataset import Dataset
from metamodal.data.load_errors import DataError
from metamodal.data.loaders import (
    generic,
    lattice_json,
    mmrec,
    movielens,
    movielens_modern,
    recbole,
)

# Detection order matters: a generic catalog may also hold .npy files, a MovieLens folder
# may hold other files; the most specific signature goes first.
LOADERS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], Dataset]]] = {
    "generic": (generic.detect, generic.load),
    "movielens": (movielens.detect, movielens.load),
    "movielens_latest": (movielens_modern.detect_latest, movielens_modern.load_latest),
    "movielens_1m": (movielens_modern.detect_1m, movielens_modern.load_1m),
    "lattice": (lattice_json.detect, lattice_json.load),
    "recbole": (recbole.detect, recbole.load),  # before mmrec: both read <name>.inter
    "mmrec": (mmrec.detect, mmrec.load),
}
FORMATS = tuple(LOADERS)


def detect_format(path: str | Path) -> str:
    p = Path(path)
    if not p.exists():
        raise DataError(p, "no such file or directory")
    for name, (detect, _) in LOADERS.items():
        if detect(p):
            return name
    raise DataError(
        p,
        "unrecognised dataset format; expected one of: generic (items.jsonl + interactions.csv), "
        "movielens (u.data), movielens_latest (movies.csv + ratings.csv: ml-latest, ml-25m, "
        "ml-32m), movielens_1m (movies.dat + ratings.dat), lattice (5-core/train.json), recbole "
        "(<name>.inter with name:type headers), mmrec (<name>.inter)",
    )


def dataset_name(path: str | Path) -> str:
    """The name a dataset declares (a catalogue's ``catalog.json`` ``name``), else its folder's.

    Tuned config layers are keyed on it: keyed on the folder alone, the generated shop's layer
    would apply to every user catalogue that happens to sit in a folder of the same name."""
    p = Path(path).resolve()
    if generic.detect(p):
        return generic.read_schema(p).name or p.name
    return p.name


def load_dataset(path: str | Path, format: str | None = None) -> Dataset:
    """Load any supported dataset; ``format`` skips autodetection."""
    p = Path(path)
    fmt = format or detect_format(p)
    if fmt not in LOADERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not p.exists():
        raise DataError(p, "no such file or directory")
    return LOADERS[fmt][1](p)
