"""RecBole atomic files: ``<name>.inter`` and optional ``<name>.item`` / ``<name>.user``,
tab-separated, each header field typed as ``name:type`` (``token``, ``token_seq``, ``float``,
``float_seq``). Ids are tokens (any string). The item file's ``token``/``token_seq`` fields other
than the id (title, categories, brand...) become the ``text`` modality, in header order.

A header field without a type, or a type RecBole does not define, is an error naming the file
and field; an interaction with an item the ``.item`` file lacks is skipped and counted.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from metamodal.data.dataset import Dataset, Interactions, drop_duplicates
from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.loaders.common import float_column, read_table
from metamodal.data.modalities import Modality, TextModality

TYPES = ("token", "token_seq", "float", "float_seq")


def _typed_header(path: Path) -> list[tuple[str, str]] | None:
    """[(field, type)] when the first line is a RecBole header, else None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\r\n").split("\t")
    except OSError:
        return None
    if not all(":" in c for c in first):
        return None
    return [tuple(c.rsplit(":", 1)) for c in first]  # type: ignore[misc]


def _inter_file(path: Path) -> Path | None:
    own = path / f"{path.name}.inter"
    if own.is_file():
        return own
    cands = sorted(path.glob("*.inter"))
    return cands[0] if len(cands) == 1 else None


def detect(path: Path) -> bool:
    inter = _inter_file(path) if path.is_dir() else None
    return inter is not None and _typed_header(inter) is not None


def _read(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table with plain field names, and each field's type."""
    header = _typed_header(path)
    if header is None:
        raise DataError(path, "expected a RecBole header (tab-separated name:type fields)")
    for n, (name, kind) in enumerate(header):
        if kind not in TYPES:
            raise DataError(path, f"unknown RecBole type {kind!r} (one of {', '.join(TYPES)})",
                            row=1, field=f"{name}:{kind}" if name else str(n))  # fmt: skip
    df = read_table(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    df.columns = [name for name, _ in header]
    return df, dict(header)


def _field(types: dict[str, str], path: Path, names: tuple[str, ...]) -> str:
    for n in names:
        if n in types:
            return n
    raise DataError(path, f"missing field (have: {', '.join(types)})", field=names[0])


def load(path: Path) -> Dataset:
    report = LoadReport()
    inter_f = _inter_file(path)
    if inter_f is None:
        raise DataError(path, "expected one <name>.inter")
    df, types = _read(inter_f)
    ucol, icol = _field(types, inter_f, ("user_id",)), _field(types, inter_f, ("item_id",))
    item_f = inter_f.with_suffix(".item")
    items_df, item_types = _read(item_f) if item_f.is_file() else (None, {})
    if items_df is not None:
        id_col = _field(item_types, item_f, (icol, "item_id"))
        item_ids = items_df[id_col].to_numpy(object)
        if len(set(item_ids)) != len(item_ids):
            raise DataError(item_f, "an item id is listed twice", field=id_col)
        known = df[icol].isin(set(item_ids)).to_numpy()
        report.skip(f"interaction with an item not in {item_f.name}",
                    f"{inter_f} row {int(np.argmax(~known)) + 1}", int((~known).sum()))  # fmt: skip
        df = df[known].reset_index(drop=True)
    else:
        item_ids = np.array(sorted(df[icol].unique()), dtype=object)
    user_ids = np.array(sorted(df[ucol].unique()), dtype=object)
    upos = {u: n for n, u in enumerate(user_ids)}
    ipos = {i: n for n, i in enumerate(item_ids)}
    rating = float_column(df, inter_f, "rating").astype(np.float32) if "rating" in types else None
    ts = float_column(df, inter_f, "timestamp").astype(np.int64) if "timestamp" in types else None
    found = Interactions(df[ucol].map(upos).to_numpy(np.int64), df[icol].map(ipos).to_numpy(np.int64),
                        rating, ts)  # fmt: skip
    if inter_f.with_suffix(".user").is_file():
        report.note(f"{inter_f.with_suffix('.user').name}: user features are not used")
    modalities: dict[str, Modality] = {}
    meta = pd.DataFrame({"item_id": item_ids})
    if items_df is not None:
        text_cols = [c for c, k in item_types.items() if k in ("token", "token_seq") and c != id_col]
        meta = items_df.rename(columns={id_col: "item_id"})
        if text_cols:
            rows = items_df[text_cols].itertuples(index=False)
            modalities["text"] = TextModality.from_texts(
                [". ".join(v for v in r if v.strip()) or None for r in rows])
    return Dataset(name=path.name, format="recbole", path=str(path), user_ids=user_ids, item_ids=item_ids,
                   interactions=drop_duplicates(found, report, str(inter_f)),
                   modalities=modalities, item_meta=meta, report=report)  # fmt: skip
