"""Two extraction runs compared modality by modality: coverage, embedding drift and the
stability of each item's nearest neighbours.

Drift is alibi-detect's: the kernel MMD test (p-value from permutations) decides, and beside it
the share of embedding dimensions whose Kolmogorov-Smirnov test rejects after Bonferroni (which
dimensions moved, not only whether) and a domain classifier's held-out ROC AUC (0.5: the two
runs cannot be told apart). Both runs are subsampled to ``max_rows`` present items: MMD's
permutations cost O(n²)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metamodal.data.loaders.embeddings import embedding_matrix, read_modality
from metamodal.rundir import ExtractRun


@dataclass(frozen=True)
class DriftConfig:
    p_value: float = 0.05
    max_rows: int = 1000
    permutations: int = 200
    neighbours: int = 10
    coverage_drop: float = 0.05  # a present share this much lower is flagged
    seed: int = 0


@dataclass
class Extracted:
    """One modality of one run: item ids, embeddings and presence, in the run's row order."""

    ids: np.ndarray
    emb: np.ndarray
    present: np.ndarray


def read_run(path: str | Path) -> dict[str, Extracted]:
    """Every complete modality of an extraction run (shards checked against the manifest)."""
    run = ExtractRun(Path(path))
    out = {}
    for name, entry in run.manifest().modalities.items():
        if not entry.complete:
            continue
        t = read_modality(run.path, name, run.verified_shards(name, entry))
        emb = embedding_matrix(t).astype(np.float32, copy=False)
        out[name] = Extracted(np.array([str(i) for i in t.column("item_id").to_pylist()]), emb,
                              np.asarray(t.column("present").to_pylist(), bool))  # fmt: skip
    return out


def coverage(ref: Extracted | None, cur: Extracted | None, drop: float) -> dict:
    """Present items in each run (the schema's numbers), their shares, and whether the share
    fell by more than ``drop``."""
    def count(m):
        return (0, None) if m is None else (int(m.present.sum()), float(m.present.mean()) if len(m.ids) else None)

    (nr, sr), (nc, sc) = count(ref), count(cur)
    change = None if sr is None or sc is None else sc - sr
    return {"reference": nr, "current": nc, "reference_share": sr, "current_share": sc,
            "change": change, "dropped": bool(change is not None and change < -drop) or (nr > 0 and cur is None)}  # fmt: skip


def _sample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[rng.choice(len(x), n, replace=False)]


def drift(ref: np.ndarray, cur: np.ndarray, cfg: DriftConfig) -> dict:
    """MMD decides (``detected``, ``score`` = MMD², ``p_value``); KS and the classifier add
    their readings. Too few rows on either side: nothing decided, and said."""
    if min(len(ref), len(cur)) < 20:
        return {"detected": None, "score": None, "p_value": None,
                "note": f"too few present items to test ({len(ref)} reference, {len(cur)} current)"}  # fmt: skip
    import torch
    from alibi_detect.cd import KSDrift, MMDDrift

    rng = np.random.default_rng(cfg.seed)
    x, y = _sample(ref, cfg.max_rows, rng), _sample(cur, cfg.max_rows, rng)
    torch.manual_seed(cfg.seed)  # the permutations: one answer per pair of runs
    mmd = MMDDrift(x, backend="pytorch", p_val=cfg.p_value, n_permutations=cfg.permutations,
                   device="cpu").predict(y)["data"]  # fmt: skip
    ks = KSDrift(x, p_val=cfg.p_value, correction="bonferroni").predict(y, drift_type="feature")["data"]
    return {"detected": bool(mmd["is_drift"]), "score": float(mmd["distance"]), "p_value": float(mmd["p_val"]),
            "method": "alibi-detect MMDDrift (RBF kernel, permutation test)",
            "drifted_dimensions": float(np.mean(ks["is_drift"])),
            "domain_classifier_auc": domain_auc(x, y, cfg.seed),
            "rows": {"reference": len(x), "current": len(y)}}  # fmt: skip


def domain_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Held-out ROC AUC of a logistic regression telling current rows from reference rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    label = np.r_[np.zeros(len(x)), np.ones(len(y))]
    p = cross_val_predict(LogisticRegression(max_iter=500), np.vstack([x, y]), label, cv=5,
                          method="predict_proba")[:, 1]  # fmt: skip
    return float(roc_auc_score(label, p))


def neighbour_overlap(ref: Extracted, cur: Extracted, k: int, max_rows: int, seed: int) -> dict:
    """Mean overlap of each common item's top-``k`` cosine neighbours (among the items present
    in both runs): 1 when re-encoding kept the geometry, near k/n when it scrambled it."""
    common, ri, ci = np.intersect1d(ref.ids[ref.present], cur.ids[cur.present], return_indices=True)
    if len(common) <= k + 1:
        return {"overlap@k": None, "k": k, "items": int(len(common))}
    rpos, cpos = np.flatnonzero(ref.present)[ri], np.flatnonzero(cur.present)[ci]
    take = np.random.default_rng(seed).permutation(len(common))[:max_rows]
    a, b = _unit(ref.emb[rpos[take]]), _unit(cur.emb[cpos[take]])
    na, nb = _top_k(a, k), _top_k(b, k)
    overlap = np.array([len(np.intersect1d(p, q)) / k for p, q in zip(na, nb, strict=True)])
    return {"overlap@k": float(overlap.mean()), "k": k, "items": int(len(take)),
            "chance": k / max(1, len(take) - 1)}  # fmt: skip


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argpartition(-sim, k, axis=1)[:, :k]


def compare_runs(reference: str | Path, current: str | Path, cfg: DriftConfig) -> dict:
    """Per modality of either run: coverage (reference, current, change), drift, neighbours."""
    ref, cur = read_run(reference), read_run(current)
    out = {}
    for name in dict.fromkeys([*ref, *cur]):
        r, c = ref.get(name), cur.get(name)
        entry = {"coverage": coverage(r, c, cfg.coverage_drop)}
        if r is not None and c is not None and r.emb.shape[1] == c.emb.shape[1]:
            entry["drift"] = drift(r.emb[r.present], c.emb[c.present], cfg)
            entry["neighbours"] = neighbour_overlap(r, c, cfg.neighbours, cfg.max_rows, cfg.seed)
        else:
            why = "absent from one run" if r is None or c is None else "embedding sizes differ (another encoder)"
            entry["drift"] = {"detected": None, "score": None, "p_value": None, "note": why}
        out[name] = entry
    return out
