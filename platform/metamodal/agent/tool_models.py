"""Which zoo models the routes may use as fusion tools, chosen on the select episodes only: the
choice decides what every route can reach, so it must never see a test episode."""

from __future__ import annotations

import numpy as np

from metamodal.agent.episodes import Episode, pool_ndcg


def choose_tool_models(scorers, exclude: str, sel: list[Episode], n: int, rule: str) -> tuple[list[str], dict]:
    """The ``n`` zoo models offered to the routes as fusion tools, by their masked scores on the
    select episodes (``pick_tool_models``), and every candidate's ``mean_of_kinds`` for the log."""
    ndcg: dict[str, dict[tuple, list[float]]] = {}
    for k, sc in scorers.items():
        if k == exclude:
            continue
        for e in sel:
            ndcg.setdefault(k, {}).setdefault((e.pool_kind, tuple(e.available)), []).append(pool_ndcg(sc.scores(e), e))
    per = {k: {b: np.asarray(v) for b, v in d.items()} for k, d in ndcg.items()}
    return pick_tool_models(per, n, rule), {k: mean_of_kinds(d) for k, d in per.items()}


def kind_mean(per_bucket: dict[tuple, list[float] | np.ndarray], kind: str) -> float | None:
    """The mean over every episode of one pool kind (None where the model has none)."""
    rows = [np.asarray(v) for b, v in per_bucket.items() if b[0] == kind]
    return float(np.concatenate(rows).mean()) if rows else None


def mean_of_kinds(per_bucket: dict[tuple, list[float] | np.ndarray]) -> float:
    """Target-positive and fixed pools averaged, each over all its episodes."""
    kinds = [m for kind in ("target_positive", "fixed") if (m := kind_mean(per_bucket, kind)) is not None]
    return float(np.mean(kinds))


def pick_tool_models(ndcg: dict[str, dict[tuple, np.ndarray]], n: int, rule: str) -> list[str]:
    """``ndcg``: per model, per select bucket, its episodes' NDCG@10. ``mean``: the ``n`` best
    by ``mean_of_kinds``. ``coverage``: chosen one at a time to maximise the sum over buckets of
    the best chosen model's mean there — a route picks its tools per bucket, so a model that
    wins only where one modality survives is worth a slot the overall mean would not give it.
    ``coverage_fixed``: ``coverage``, then the best model on the fixed pools if it is not chosen
    yet — the fixed pools are one bucket among many, so coverage alone can leave their strongest
    baseline out of every route."""
    mean = {k: mean_of_kinds(d) for k, d in ndcg.items()}
    if rule == "coverage_fixed":
        chosen = pick_tool_models(ndcg, n, "coverage")
        fixed = {k: m for k, d in ndcg.items() if (m := kind_mean(d, "fixed")) is not None}
        best = max(fixed, key=lambda k: (fixed[k], mean[k]), default=None)
        return chosen + [best] if best is not None and best not in chosen else chosen
    if rule == "mean":
        return sorted(mean, key=lambda k: -mean[k])[:n]
    per = {k: {b: float(v.mean()) for b, v in d.items()} for k, d in ndcg.items()}
    buckets = sorted({b for d in per.values() for b in d})
    chosen: list[str] = []
    while len(chosen) < min(n, len(per)):
        def cover(k: str) -> tuple[float, float]:
            return sum(max(per[m].get(b, -np.inf) for m in [*chosen, k]) for b in buckets), mean[k]

        chosen.append(max((k for k in per if k not in chosen), key=cover))
    return chosen
