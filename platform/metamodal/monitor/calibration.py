"""Whether a trained model's fused score means the same thing for every modality pattern.

A zoo model's score is a dot product, not a probability, so one Platt scaling (a logistic fit of
score → interacted) is fitted on validation pairs; on test pairs the scaled score's calibration
is read per item modality pattern (which content the item shows after the run's masks:
``text+image``, ``text``, ``image``, ``none``; cold items apart). A pattern whose reliability
curve leaves the diagonal is one where a single threshold or a blended score misleads. Pairs:
each sampled user's held-out items and as many random items it never touched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CalibrationConfig:
    users: int = 2000
    bins: int = 10
    seed: int = 0


def item_patterns(run) -> np.ndarray:
    """Each item's observed content pattern under the run's masks, by kind (``text+image``,
    ``text``, ``image``, ``none``; ``cold`` for cold items), over the features the model reads
    (every modality for an ID-only model)."""
    miss, ds = run.miss, run.ds
    names = run.modalities or list(ds.modalities)
    kinds: dict[str, np.ndarray] = {}
    for n in names:
        present = miss.present[n] if miss is not None and n in miss.present else ds.modalities[n].present
        kind = ds.modalities[n].kind
        kinds[kind] = kinds.get(kind, np.zeros(ds.n_items, bool)) | present
    labels = np.array(["+".join(k for k, p in kinds.items() if p[i]) or "none" for i in range(ds.n_items)],
                      dtype=object)  # fmt: skip
    if miss is not None:
        labels[miss.cold_items] = "cold"
    return labels


def _pairs(run, part: str, cfg: CalibrationConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, label) for ``part``: its positives and one never-touched item each."""
    rng = np.random.default_rng(cfg.seed + (part == "test"))
    ds, sp = run.ds, run.split
    pos = ds.matrix(sp.valid if part == "valid" else sp.test)
    touched = ds.matrix()
    users = np.flatnonzero(np.diff(pos.indptr))
    users = users if len(users) <= cfg.users else np.sort(rng.choice(users, cfg.users, replace=False))
    u_out, i_out, y_out = [], [], []
    for u in users:
        items = pos.indices[pos.indptr[u] : pos.indptr[u + 1]]
        seen = set(touched.indices[touched.indptr[u] : touched.indptr[u + 1]])
        negs = [j for j in rng.integers(0, ds.n_items, 4 * len(items)) if j not in seen][: len(items)]
        u_out += [u] * (len(items) + len(negs))
        i_out += [*items, *negs]
        y_out += [1] * len(items) + [0] * len(negs)
    return np.array(u_out), np.array(i_out), np.array(y_out)


def reliability(p: np.ndarray, y: np.ndarray, bins: int) -> dict:
    """Equal-width bins: per bin the mean confidence, the observed rate and the count; ECE."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        if m.any():
            rows.append({"bin": b, "confidence": float(p[m].mean()), "observed": float(y[m].mean()), "n": int(m.sum())})
    ece = sum(r["n"] * abs(r["confidence"] - r["observed"]) for r in rows) / max(1, len(p))
    return {"ece": float(ece), "pairs": int(len(p)), "positives": int(y.sum()), "bins": rows}


def calibration(run_dir: str | Path, cfg: CalibrationConfig | None = None) -> dict:
    """Platt scaling on validation; per-pattern reliability and ECE (and score quantiles) on test."""
    from sklearn.linear_model import LogisticRegression

    from metamodal.data.missing import GRAPH
    from metamodal.train.artifacts import load_run
    from metamodal.train.masked_scores import MaskedRunScorer

    cfg = cfg or CalibrationConfig()
    run = load_run(run_dir)
    group_of = {n: run.ds.modalities[n].kind for n in run.modalities}
    uv, iv = MaskedRunScorer(run, group_of).vectors((GRAPH, *dict.fromkeys(group_of.values())))
    if uv is None:
        return {"model": run.model, "note": "the model has no user vectors to score pairs with"}

    def scores(u, i):
        return np.einsum("nd,nd->n", uv[u], iv[i])

    vu, vi, vy = _pairs(run, "valid", cfg)
    platt = LogisticRegression().fit(scores(vu, vi)[:, None], vy)
    tu, ti, ty = _pairs(run, "test", cfg)
    s = scores(tu, ti)
    p = platt.predict_proba(s[:, None])[:, 1]
    pattern = item_patterns(run)[ti]
    out = {"model": run.model, "run": str(run_dir), "overall": reliability(p, ty, cfg.bins), "patterns": {}}
    for name in sorted(set(pattern)):
        m = pattern == name
        out["patterns"][name] = {**reliability(p[m], ty[m], cfg.bins),
                                 "score_quantiles": np.quantile(s[m], [0.1, 0.5, 0.9]).tolist()}  # fmt: skip
    return out
