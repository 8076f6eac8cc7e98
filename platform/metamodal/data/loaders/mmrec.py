"""The MMRec toolbox format: ``<name>.inter`` (tab-separated ``userID itemID`` plus any of
``rating``, ``timestamp``, ``x_label``) and one ``.npy`` matrix per feature modality, rows
aligned to itemID. Ids are already dense indices. Where ``<name>_og_ids.inter`` (original ids,
row-aligned) and ``<name>_text.tsv`` (original id -> text) sit beside it, as in lfm2k, the raw
text is attached as the ``text`` modality so that agent tools can read it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metamodal.data.dataset import Dataset, Interactions, drop_duplicates
from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.loaders.common import (
    feature_files,
    integer_column,
    load_feature_matrix,
    read_table,
    require_columns,
)
from metamodal.data.modalities import Modality, TextModality

USER_COLS = ("userID", "user_id")
ITEM_COLS = ("itemID", "item_id")


def find_inter(path: Path) -> Path:
    if path.is_file():
        return path
    own = path / f"{path.name}.inter"
    if own.is_file():
        return own
    cands = sorted(p for p in path.glob("*.inter") if not p.stem.endswith("_og_ids"))
    if len(cands) == 1:
        return cands[0]
    raise DataError(path, f"expected one <name>.inter, found {[c.name for c in cands] or 'none'}")


def detect(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".inter") or (
        path.is_dir() and any(path.glob("*.inter"))
    )


def _pick(df: pd.DataFrame, path: Path, names: tuple[str, ...]) -> str:
    for n in names:
        if n in df.columns:
            return n
    require_columns(df, path, [names[0]])
    raise AssertionError  # unreachable


def _raw_text(
    directory: Path,
    name: str,
    inter_df: pd.DataFrame,
    item: np.ndarray,
    n_items: int,
    report: LoadReport,
) -> TextModality | None:
    og_path, text_path = directory / f"{name}_og_ids.inter", directory / f"{name}_text.tsv"
    if not (og_path.is_file() and text_path.is_file()):
        return None
    og = read_table(og_path, sep="\t")
    if len(og) != len(inter_df):
        report.note(
            f"{og_path.name} has {len(og)} rows, {name}.inter {len(inter_df)}: raw text not attached"
        )
        return None
    og_item = integer_column(og, og_path, _pick(og, og_path, ITEM_COLS))
    mapping = pd.Series(og_item).groupby(item).first()
    text = read_table(text_path, sep="\t", dtype=str, keep_default_na=False)
    if text.shape[1] < 2:
        raise DataError(text_path, "expected two columns: original item id and text")
    by_id = dict(zip(pd.to_numeric(text.iloc[:, 0], errors="coerce"), text.iloc[:, 1], strict=True))
    texts: list[str | None] = [None] * n_items
    for idx, og_id in mapping.items():
        texts[int(idx)] = by_id.get(og_id)
    return TextModality.from_texts(texts, name="text")


def load(path: Path) -> Dataset:
    report = LoadReport()
    inter_path = find_inter(path)
    directory = inter_path.parent
    name = inter_path.stem
    df = read_table(inter_path, sep="\t")
    ucol, icol = _pick(df, inter_path, USER_COLS), _pick(df, inter_path, ITEM_COLS)
    user = integer_column(df, inter_path, ucol)
    item = integer_column(df, inter_path, icol)
    label = None
    if "x_label" in df.columns:
        label = integer_column(df, inter_path, "x_label")
        bad = (label < 0) | (label > 2)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                inter_path, f"x_label must be 0/1/2, got {label[row]}", row=row + 1, field="x_label"
            )
    rating = df["rating"].to_numpy(np.float32) if "rating" in df.columns else None
    ts = integer_column(df, inter_path, "timestamp") if "timestamp" in df.columns else None

    feats = feature_files(directory)
    n_items = int(item.max(initial=-1)) + 1
    if feats:
        rows = {p.name: np.load(p, mmap_mode="r").shape[0] for p in feats}
        n_feat = max(rows.values())
        if n_feat < n_items:
            f = min(rows, key=rows.get)
            raise DataError(
                directory / f,
                f"feature rows do not align with items: {rows[f]} rows, but itemID reaches {n_items - 1}",
                row=rows[f] + 1,
            )
        n_items = n_feat
    n_users = int(user.max(initial=-1)) + 1

    inter = drop_duplicates(Interactions(user, item, rating, ts, label), report, str(inter_path))
    modalities: dict[str, Modality] = {}
    text = _raw_text(directory, name, df, item, n_items, report)
    if text is not None:
        modalities["text"] = text
    for p in feats:
        mod = load_feature_matrix(p, n_items, report)
        modalities[mod.name] = mod
    return Dataset(
        name=name,
        format="mmrec",
        path=str(path),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        interactions=inter,
        modalities=modalities,
        report=report,
    )
