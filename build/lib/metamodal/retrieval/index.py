"""First-stage retrieval with faiss: any zoo model's item vectors (or a content modality's
features, for users with no history) in a flat, IVF or HNSW inner-product index, on the GPU when
faiss-gpu and a GPU are there (``use_gpu=None``), with its recall against exact search measured
rather than assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("flat", "ivf", "hnsw")


@dataclass
class IndexSpec:
    kind: str = "hnsw"
    nlist: int | None = None  # IVF lists; default ~4 sqrt(n)
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 128
    use_gpu: bool | None = None  # None: when faiss was built with GPUs and sees one

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {self.kind!r}")


def _gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class ItemIndex:
    """Inner-product ANN over item vectors; ``ids`` maps index rows back to item indices (a
    content index holds only the items whose modality is present)."""

    def __init__(
        self, vectors: np.ndarray, spec: IndexSpec | None = None, ids: np.ndarray | None = None
    ):
        import faiss

        self.spec = spec or IndexSpec()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = x.shape
        self.ids = np.arange(n) if ids is None else np.asarray(ids)
        if self.spec.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.spec.kind == "ivf":
            nlist = self.spec.nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(x)
            index.nprobe = min(self.spec.nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(d, self.spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.spec.ef_search
        use_gpu = self.spec.use_gpu if self.spec.use_gpu is not None else _gpu_available()
        self.on_gpu = False
        if use_gpu and self.spec.kind != "hnsw":  # faiss has no GPU HNSW; flat/IVF move over
            if not _gpu_available():
                raise RuntimeError(
                    "use_gpu=True but faiss has no GPU support here (install faiss-gpu)"
                )
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, 0, index)
            self.on_gpu = True
        index.add(x)
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], item indices [q, k]); -1 where fewer than k items exist."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        scores, rows = self.index.search(q, k)
        items = np.where(rows >= 0, self.ids[np.clip(rows, 0, None)], -1)
        return scores, items


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    s = queries.astype(np.float32) @ vectors.astype(np.float32).T
    top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
    order = np.take_along_axis(s, top, 1).argsort(1)[:, ::-1]
    return np.take_along_axis(top, order, 1)


def recall_vs_exact(index: ItemIndex, queries: np.ndarray, vectors: np.ndarray, k: int) -> float:
    """Mean |ANN top-k ∩ exact top-k| / k over the queries."""
    _, approx = index.search(queries, k)
    exact = index.ids[exact_top_k(queries, vectors, k)]
    hits = [len(set(a[a >= 0]) & set(e)) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits) / k)


def content_index(
    features: np.ndarray, present: np.ndarray, spec: IndexSpec | None = None
) -> ItemIndex:
    """An index over the items whose content modality is present (L2-normalised features): a
    cold-start user is served by a text or image query vector in the same encoder's space."""
    rows = np.flatnonzero(present)
    x = features[rows].astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return ItemIndex(x, spec, ids=rows)
