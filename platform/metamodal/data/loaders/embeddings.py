"""Extraction output read as the dataset's feature modalities: one more feature source, like a
catalogue's own ``.npy`` files. The layout is the extraction job's (``extract/pipeline.py``)::

    run.json, manifest.json           ``metamodal.rundir.ExtractRun``
    <modality>/shard-00000.parquet    item_id, idx, modality, embedding, present, reason[, labels]

Training, evaluation and Serve read it here, so none of them imports the extraction job.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from metamodal.data.dataset import Dataset
from metamodal.data.modalities import FeatureModality, TextModality
from metamodal.rundir import ExtractRun


def read_modality(out: str | Path, modality: str, shards: Iterable[Path | bytes] | None = None) -> pa.Table:
    """A modality's shards as one table (``shards``: files or their verified bytes; default
    every shard file)."""
    shards = ExtractRun(out).shard_files(modality) if shards is None else shards
    tables = [pq.read_table(pa.BufferReader(s) if isinstance(s, bytes) else s) for s in shards]
    if not tables:
        raise FileNotFoundError(f"{Path(out) / modality}: no shards")
    # shards written before labels existed lack the column: promoted to nulls, not an error
    return pa.concat_tables(tables, promote_options="default")


def embedding_matrix(t: pa.Table) -> np.ndarray:
    """The table's ``embedding`` column as an [n, dim] array."""
    return np.asarray(t.column("embedding").combine_chunks().flatten()).reshape(t.num_rows, -1)


def load_embeddings(out: str | Path, ds: Dataset) -> dict[str, FeatureModality | TextModality]:
    """Every extracted modality aligned to ``ds`` by item id; an image classifier's labels
    become a text modality of the image's kind (``<name>_labels``: visual keywords, observed
    exactly when the image is)."""
    mods: dict[str, FeatureModality | TextModality] = {}
    run = ExtractRun(out)
    for name, info in run.manifest().modalities.items():
        mods.update(_modality(Path(out), name, info.source, ds, run.verified_shards(name, info)))
    return mods


def _modality(out: Path, name: str, kind: str, ds: Dataset, shards: Iterable[bytes]) -> dict:
    t = read_modality(out, name, shards)
    ids = t.column("item_id").to_pylist()
    index = {str(i): k for k, i in enumerate(ds.item_ids)}
    pos = np.array([index.get(i, -1) for i in ids])
    if (pos < 0).any():
        raise ValueError(f"{out}/{name}: item id {ids[int(np.flatnonzero(pos < 0)[0])]!r} is not in {ds.path}")
    if len(set(ids)) != len(ids) or len(ids) != ds.n_items:
        raise ValueError(f"{out}/{name}: {len(ids)} rows for {len(set(ids))} distinct items, the "
                         f"catalogue has {ds.n_items}: extracted from another catalogue; re-run it")  # fmt: skip
    emb = embedding_matrix(t)
    if not np.isfinite(emb).all():
        bad = ids[int(np.flatnonzero(~np.isfinite(emb).all(1))[0])]
        raise ValueError(f"{out}/{name}: non-finite embedding for item {bad!r}; re-run the extraction")
    feats = np.zeros((ds.n_items, emb.shape[1]), np.float32)
    present = np.zeros(ds.n_items, bool)
    feats[pos], present[pos] = emb, np.asarray(t.column("present"))
    out_mods: dict = {name: FeatureModality(name, kind, present, feats, source=str(out / name))}
    if "labels" in t.column_names:
        texts: list[str | None] = [None] * ds.n_items
        for p, lab in zip(pos, t.column("labels").to_pylist(), strict=True):
            texts[p] = lab or None
        labelled = np.array([bool(x) for x in texts])
        out_mods[f"{name}_labels"] = TextModality(f"{name}_labels", kind, labelled, texts)
    return out_mods
