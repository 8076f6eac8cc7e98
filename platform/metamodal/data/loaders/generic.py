"""The generic catalog format users bring (and the embedded default is written in).

A directory with:
- ``items.jsonl`` or ``items.parquet``: one item per row — an id, text fields, an image path
  relative to the directory (URLs are not fetched: counted as missing), any metadata;
- ``interactions.csv`` or ``interactions.parquet``: user id, item id, optional rating,
  timestamp and split (train/valid/test or 0/1/2);
- optional ``catalog.json``: the schema below, when the field names differ from the defaults;
  its ``features`` name precomputed ``.npy`` matrices aligned to the items' order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from metamodal.data.dataset import Dataset, Interactions, drop_duplicates
from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.loaders.common import (
    float_column,
    integer_column,
    load_feature_matrix,
    read_table,
    require_columns,
)
from metamodal.data.modalities import ImageModality, Modality, TextModality

SPLIT_CODES = {"train": 0, "valid": 1, "val": 1, "validation": 1, "test": 2, "0": 0, "1": 1, "2": 2}


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    kind: str = "other"


class CatalogSchema(BaseModel):
    """``catalog.json``: which fields hold what. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    items: str | None = None
    interactions: str | None = None
    id_field: str = "id"
    text_fields: list[str] = ["text"]
    image_field: str | None = "image"
    user_field: str = "user_id"
    item_field: str = "item_id"
    rating_field: str | None = "rating"
    timestamp_field: str | None = "timestamp"
    split_field: str | None = "split"
    features: dict[str, FeatureSpec] = {}


def _first(path: Path, names: tuple[str, ...]) -> Path | None:
    return next((path / n for n in names if (path / n).is_file()), None)


def detect(path: Path) -> bool:
    return path.is_dir() and (
        (path / "catalog.json").is_file()
        or (
            _first(path, ("items.jsonl", "items.parquet")) is not None
            and _first(path, ("interactions.csv", "interactions.parquet")) is not None
        )
    )


def read_schema(path: Path) -> CatalogSchema:
    f = path / "catalog.json"
    if not f.is_file():
        return CatalogSchema()
    try:
        return CatalogSchema.model_validate(json.loads(f.read_text()))
    except json.JSONDecodeError as e:
        raise DataError(f, f"invalid JSON: {e.msg}", row=e.lineno) from None
    except ValidationError as e:
        err = e.errors()[0]
        raise DataError(f, err["msg"], field=".".join(map(str, err["loc"]))) from None


def read_items(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return read_table(path)
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(path, f"invalid JSON: {e.msg}", row=n) from None
                if not isinstance(obj, dict):
                    raise DataError(path, "each line must be a JSON object", row=n)
                rows.append(obj)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable: {e}") from None
    return pd.DataFrame(rows)


def _text_column(items: pd.DataFrame, fields: list[str]) -> list[str | None]:
    parts = [items[f].astype("string").fillna("") for f in fields if f in items.columns]
    if not parts:
        return [None] * len(items)
    joined = parts[0]
    for p in parts[1:]:
        joined = joined.str.cat(p, sep=". ").str.strip(". ")
    return [t if t.strip() else None for t in joined.tolist()]


def _image_paths(
    items: pd.DataFrame, field: str, root: Path, report: LoadReport, items_path: Path
) -> list[str | None]:
    out: list[str | None] = []
    for row, v in enumerate(items[field].tolist(), start=1):
        if v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip():
            out.append(None)
        elif "://" in str(v):
            report.skip("image given as a URL (not fetched)", f"{items_path} row {row}", 1)
            out.append(None)
        else:
            p = Path(str(v))
            p = p if p.is_absolute() else root / p
            if not p.is_file():
                report.skip("image file not found", f"{items_path} row {row}: {p}", 1)
            out.append(str(p))
    return out


def load(path: Path) -> Dataset:
    report = LoadReport()
    schema = read_schema(path)
    items_path, inter_path = _catalog_files(path, schema)
    items = read_items(items_path)
    item_ids = _item_ids(items, items_path, schema.id_field)
    interactions, user_ids = _interactions(inter_path, items_path, pd.Index(item_ids), schema, report)
    modalities: dict[str, Modality] = {}
    if any(f in items.columns for f in schema.text_fields):
        modalities["text"] = TextModality.from_texts(_text_column(items, schema.text_fields))
    if schema.image_field and schema.image_field in items.columns:
        modalities["image"] = ImageModality.from_paths(
            _image_paths(items, schema.image_field, path, report, items_path)
        )
    for name, spec in schema.features.items():
        modalities[name] = load_feature_matrix(
            path / spec.path, len(item_ids), report, name=name, kind=spec.kind
        )
    used = {schema.id_field, *schema.text_fields, schema.image_field}
    meta = items[[c for c in items.columns if c not in used]].copy()
    meta.insert(0, "id", item_ids)
    return Dataset(
        name=schema.name or path.name,
        format="generic",
        path=str(path),
        user_ids=user_ids,
        item_ids=item_ids,
        interactions=interactions,
        modalities=modalities,
        item_meta=meta,
        report=report,
    )


def _catalog_files(path: Path, schema: CatalogSchema) -> tuple[Path, Path]:
    items = path / schema.items if schema.items else _first(path, ("items.jsonl", "items.parquet"))
    inter = (path / schema.interactions if schema.interactions
             else _first(path, ("interactions.csv", "interactions.parquet")))  # fmt: skip
    if items is None or inter is None:
        raise DataError(path, "generic catalog needs items.jsonl|parquet and interactions.csv|parquet")
    return items, inter


def _first_row(mask) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _item_ids(items: pd.DataFrame, items_path: Path, field: str) -> np.ndarray:
    require_columns(items, items_path, [field])
    ids = items[field]
    if ids.isna().any():
        raise DataError(items_path, "empty id", row=_first_row(ids.isna()) + 1, field=field)
    ids = ids.astype(str)
    if (dup := ids.duplicated()).any():
        row = _first_row(dup)
        raise DataError(items_path, f"duplicate item id {ids.iloc[row]!r}", row=row + 1, field=field)
    return ids.to_numpy()


def _interactions(inter_path: Path, items_path: Path, item_index: pd.Index, schema: CatalogSchema,
                  report: LoadReport) -> tuple[Interactions, np.ndarray]:  # fmt: skip
    """(interactions without duplicates, user ids): every item id must be in the catalogue."""
    inter = read_table(inter_path, dtype={schema.user_field: str, schema.item_field: str})
    require_columns(inter, inter_path, [schema.user_field, schema.item_field])
    raw_item = inter[schema.item_field].astype(str)
    iidx = item_index.get_indexer(raw_item)
    if (iidx < 0).any():
        row = _first_row(iidx < 0)
        raise DataError(inter_path, f"unknown item id {raw_item.iloc[row]!r} (not in {items_path.name})",
                        row=row + 1, field=schema.item_field)  # fmt: skip
    raw_user = inter[schema.user_field]
    if raw_user.isna().any():
        raise DataError(inter_path, "empty user id", row=_first_row(raw_user.isna()) + 1,
                        field=schema.user_field)  # fmt: skip
    user_ids, uidx = np.unique(raw_user.astype(str).to_numpy(), return_inverse=True)

    def opt(field: str | None) -> str | None:
        return field if field and field in inter.columns else None

    f = opt(schema.rating_field)
    rating = float_column(inter, inter_path, f).astype(np.float32) if f else None
    ts = integer_column(inter, inter_path, f, min_value=None) if (f := opt(schema.timestamp_field)) else None
    label = _split_codes(inter, inter_path, f) if (f := opt(schema.split_field)) else None
    found = Interactions(uidx, iidx, rating, ts, label)
    return drop_duplicates(found, report, str(inter_path)), user_ids


def _split_codes(inter: pd.DataFrame, inter_path: Path, f: str) -> np.ndarray:
    codes = inter[f].astype(str).str.lower().map(SPLIT_CODES)
    if codes.isna().any():
        row = _first_row(codes.isna())
        raise DataError(inter_path, f"split must be train/valid/test, got {inter[f].iloc[row]!r}",
                        row=row + 1, field=f)  # fmt: skip
    return codes.to_numpy(np.int8)

