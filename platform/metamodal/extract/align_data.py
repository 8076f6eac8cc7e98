"""What CLIP domain alignment trains on: the catalog's own image–text pairs, split into train /
valid / test by item, and optional co-interaction partners (items bought by the same users).

Written once by the driver to one ``.npz`` that every Ray Train worker reads (on a cluster, put
``--out`` on shared storage): uint8 pixels, token ids, the split, and a partner table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from metamodal.data import Dataset
from metamodal.data.modalities import ImageModality, TextModality, has_text
from metamodal.extract.decode import load_image


@dataclass
class PairStats:
    pairs: int
    train: int
    valid: int
    test: int
    skipped: dict[str, int]


def draw_partners(partners: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For each pair of batch ``b``, one of its co-consumed partners drawn at random (itself
    where it has none), and which pairs had one: the co-interaction term's weak labels."""
    cand = partners[b]
    has = (cand >= 0).any(1)
    pick = np.array([rng.choice(c[c >= 0]) if h else i for c, h, i in zip(cand, has, b, strict=True)])
    return pick, has


def co_partners(
    ds: Dataset, items: np.ndarray, train: np.ndarray, k: int, idx: np.ndarray | None = None
) -> np.ndarray:
    """[len(items), k] indices (into ``items``) of each pair's most co-consumed train pairs, -1
    padded. Only train pairs are partners, so no held-out text leaks into training; ``idx``
    limits the interactions used (pass a split's train part so no test interaction leaks)."""
    x = ds.matrix(idx).tocsc()[:, items].astype(np.float32)
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    co = (co @ sp.diags(train.astype(np.float32))).tocsr()  # partner columns: train pairs only
    co.eliminate_zeros()
    out = np.full((len(items), k), -1, dtype=np.int64)
    for r in range(len(items)):
        row = co.getrow(r)
        if row.nnz:
            top = row.indices[np.argsort(-row.data, kind="stable")[:k]]
            out[r, : len(top)] = top
    return out


def _decode_pairs(images: ImageModality, both: list[int], size: int, max_pairs: int | None, seed: int,
                  skipped: dict[str, int]) -> tuple[list[int], list[np.ndarray]]:  # fmt: skip
    """Decode the items that have both, in a seeded order when ``max_pairs`` caps them, until
    that many decoded; the candidates never reached are counted as ``beyond_max_pairs``."""
    order = both if max_pairs is None else np.random.default_rng([seed, 5]).permutation(both).tolist()
    keep, pixels = [], []
    for n, i in enumerate(order):
        if max_pairs is not None and len(keep) == max_pairs:
            skipped["beyond_max_pairs"] = len(order) - n
            break
        px, why = load_image(images.paths[i], size)
        if px is None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        keep.append(i)
        pixels.append(px)
    at = np.argsort(keep, kind="stable")  # item order, as without a cap
    return [keep[j] for j in at], [pixels[j] for j in at]


def build_pairs(
    ds: Dataset,
    path: Path,
    image_size: int,
    tokenize,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    neighbours: int = 10,
    seed: int = 0,
    interactions_idx: np.ndarray | None = None,
    max_pairs: int | None = None,
) -> PairStats:
    texts = ds.modalities.get("text")
    images = ds.modalities.get("image")
    if not isinstance(texts, TextModality) or not isinstance(images, ImageModality):
        raise ValueError(f"{ds.path}: alignment needs raw text and images in the catalog")
    skipped: dict[str, int] = {}
    both = []
    for i in range(ds.n_items):
        if not has_text(texts.texts[i]):
            skipped["no_text"] = skipped.get("no_text", 0) + 1
        elif images.paths[i] is None:
            skipped["no_image"] = skipped.get("no_image", 0) + 1
        else:
            both.append(i)
    keep, pixels = _decode_pairs(images, both, image_size, max_pairs, seed, skipped)
    if len(keep) < 20:
        raise ValueError(f"{ds.path}: only {len(keep)} items have both a readable image and text")
    items = np.array(keep, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    n_test, n_valid = int(len(items) * test_frac), int(len(items) * valid_frac)
    split = np.zeros(len(items), dtype=np.int8)  # 0 train, 1 valid, 2 test
    split[order[:n_test]] = 2
    split[order[n_test : n_test + n_valid]] = 1
    tokens = tokenize([texts.texts[i] for i in items]).numpy().astype(np.int64)
    partners = co_partners(ds, items, split == 0, neighbours, interactions_idx)
    np.savez(
        path,
        items=items,
        pixels=np.stack(pixels),
        tokens=tokens,
        split=split,
        partners=partners,
    )
    return PairStats(len(items), int((split == 0).sum()), int((split == 1).sum()), n_test, skipped)
