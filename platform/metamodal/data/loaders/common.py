"""Helpers shared by the loaders: reading tables and feature matrices with errors that name
the file, row and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.modalities import FeatureModality, guess_feature_kind


def read_table(path: Path, **kwargs) -> pd.DataFrame:
    """pandas.read_csv/read_parquet, with parse failures reported against the file."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(path, f"cannot parse: {e}") from None


def require_columns(df: pd.DataFrame, path: Path, columns: list[str]) -> None:
    for c in columns:
        if c not in df.columns:
            raise DataError(
                path, f"missing column (have: {', '.join(map(str, df.columns))})", field=c
            )


def integer_column(
    df: pd.DataFrame, path: Path, column: str, *, min_value: int | None = 0
) -> np.ndarray:
    """The column as int64; the first non-integer or out-of-range value is named by row."""
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            path, f"not an integer: {df[column].iloc[row]!r}", row=row + 1, field=column
        )
    arr = values.to_numpy(dtype=np.int64)
    if min_value is not None and len(arr) and arr.min() < min_value:
        row = int(np.flatnonzero(arr < min_value)[0])
        raise DataError(path, f"value {arr[row]} is below {min_value}", row=row + 1, field=column)
    return arr


def float_column(df: pd.DataFrame, path: Path, column: str) -> np.ndarray:
    """The column as float64; the first value that is not a number is named by row."""
    values = pd.to_numeric(df[column], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(path, f"not a number: {df[column].iloc[row]!r}", row=row + 1, field=column)
    return values.to_numpy(np.float64)


def load_feature_matrix(
    path: Path,
    n_items: int,
    report: LoadReport,
    *,
    name: str | None = None,
    kind: str | None = None,
) -> FeatureModality:
    """One ``.npy`` matrix aligned to the item index. Rows that are all zero or non-finite are
    marked absent (MMRec's convention for a missing feature), and counted."""
    try:
        mat = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(path, f"unreadable feature matrix: {e}") from None
    if mat.ndim != 2:
        raise DataError(path, f"feature matrix must be 2-D [items, dim], got shape {mat.shape}")
    if mat.shape[0] != n_items:
        raise DataError(
            path,
            f"feature rows do not align with items: {mat.shape[0]} rows for {n_items} items",
            row=min(mat.shape[0], n_items) + 1,
        )
    mat = mat.astype(np.float32, copy=False)
    finite = np.isfinite(mat).all(axis=1)
    nonzero = np.abs(np.where(np.isfinite(mat), mat, 0)).sum(axis=1) > 0
    present = finite & nonzero
    name = name or path.stem
    if (~finite).any():
        report.skip(
            f"{name}: non-finite feature row",
            f"{path} row {int(np.flatnonzero(~finite)[0]) + 1}",
            int((~finite).sum()),
        )
    if (~nonzero & finite).any():
        report.note(f"{name}: {int((~nonzero & finite).sum())} all-zero rows marked absent")
    return FeatureModality(
        name=name,
        kind=kind or guess_feature_kind(name),
        present=present,
        features=np.where(present[:, None], mat, 0.0),
        source=str(path),
    )


def feature_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.npy") if p.is_file())
