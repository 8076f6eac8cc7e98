"""Per-episode evidence statistics: what each tool's answer looks like for *this* episode — how
much of the pool and of the history it covers, how coherent the user's profile is in its space,
the spread, margin and entropy of its scores, and its agreement with every other tool, with the
first stage and with the other tools' consensus — plus the exact history length, the pool's
cold share and the pool kind. A router can only beat a per-pattern rule if it sees something a
rule cannot condition on; these are that something.

Everything is computed from the tools' outputs and the ``Evidence`` view, so a masked modality
cannot reach a statistic (a masked tool answers ``unavailable`` and its statistics are absent).
``StatsCodec`` turns them into decile digits fitted on training episodes: the prompt stays
short and a 135M model reads one digit per statistic.
"""

from __future__ import annotations

import numpy as np

from metamodal.agent.evidence import Evidence, MaskedModality
from metamodal.agent.fusion import zscore
from metamodal.agent.tools import ToolResult

PER_TOOL = ("cover", "hist", "coherence", "spread", "margin", "gap10", "entropy", "consensus")
TASK_CODES = {"warm_user": "warm", "cold_user": "cold", "cold_item": "new"}
TASK_FLAGS = ("cold_user", "cold_item")  # the gate's task one-hot (warm_user: both 0); the
# prompt names the task in its header
FIRST = "first"  # the first stage's scores, observed with graph only


def _ranks(s: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(s, kind="stable"), kind="stable").astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation over the candidates both score (NaN: unscored)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return 0.0
    ra, rb = _ranks(a[ok]), _ranks(b[ok])
    sa, sb = ra.std(), rb.std()
    return float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (sa * sb)) if sa * sb else 0.0


def _shape(s: np.ndarray) -> dict[str, float]:
    z = np.sort(zscore(s))[::-1]
    p = np.exp(z - z.max())
    p /= p.sum()
    ent = float(-(p * np.log(p + 1e-12)).sum() / np.log(len(z))) if len(z) > 1 else 1.0
    top10 = z[min(9, len(z) - 1)]
    return {"spread": float(np.nanstd(s)), "margin": float(z[0] - z[1]) if len(z) > 1 else 0.0,
            "gap10": float(z[0] - top10), "entropy": ent}  # fmt: skip


def _profile(ev: Evidence, tool: str) -> tuple[float, float]:
    """(share of the history that has the tool's modality, coherence of the history's unit
    vectors: the norm of their mean) — for content tools; (1, 0) for the others."""
    try:
        mods = ev.features(tool)
    except (MaskedModality, KeyError):
        return 1.0, 0.0
    hist = ev.ep.history
    if not mods or not len(hist):
        return 0.0, 0.0
    shares, coh = [], []
    for _, x, present in mods:
        h = hist[present[hist]]
        shares.append(len(h) / len(hist))
        coh.append(float(np.linalg.norm(x[h].mean(0))) if len(h) else 0.0)
    return float(np.mean(shares)), float(np.mean(coh))


def episode_stats(
    ev: Evidence, results: dict[str, ToolResult], first: np.ndarray | None
) -> dict[str, float]:
    """Flat ``name -> value``: ``<tool>.<stat>`` for every usable tool, ``rho.<a>.<b>`` for
    each pair (the first stage included), and episode-level values."""
    ep = ev.ep
    scored = {t: r.scores for t, r in results.items() if r.usable}
    if first is not None:
        scored[FIRST] = np.asarray(first, dtype=np.float64)
    out: dict[str, float] = {
        "hist_len": float(np.log1p(len(ep.history))),
        "cold_share": float(ep.cold.mean()) if len(ep.cold) else 0.0,
        "fixed_pool": float(ep.pool_kind == "fixed"),
        **{f"task.{t}": float(ep.task == t) for t in TASK_FLAGS},
    }
    z = {t: zscore(s) for t, s in scored.items()}
    names = list(scored)
    for t in names:
        s = scored[t]
        out[f"{t}.cover"] = float(np.isfinite(s).mean())
        out.update({f"{t}.{k}": v for k, v in _shape(s).items()})
        if t != FIRST:
            out[f"{t}.hist"], out[f"{t}.coherence"] = _profile(ev, t)
            others = [z[o] for o in names if o not in (t, FIRST)]
            out[f"{t}.consensus"] = spearman(s, np.mean(others, 0)) if others else 0.0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[f"rho.{a}.{b}"] = spearman(scored[a], scored[b])
    return out


class StatsCodec:
    """Decile codes per statistic, fitted on training episodes; also the numeric feature
    vector the learned gate reads (missing statistics: 0, with the tool's usable flag 0)."""

    def __init__(self, tools: list[str]) -> None:
        self.tools = [*tools, FIRST]
        self.names = ["hist_len", "cold_share", "fixed_pool", *(f"task.{t}" for t in TASK_FLAGS)]
        for t in self.tools:
            self.names += [f"{t}.usable"] + [f"{t}.{k}" for k in PER_TOOL]
        for i, a in enumerate(self.tools):
            self.names += [f"rho.{a}.{b}" for b in self.tools[i + 1 :]]
        self.edges: dict[str, np.ndarray] = {}

    def fit(self, rows: list[dict[str, float]]) -> StatsCodec:
        for n in self.names:
            vals = np.array([r[n] for r in rows if n in r], dtype=np.float64)
            self.edges[n] = np.quantile(vals, np.linspace(0.1, 0.9, 9)) if len(vals) else np.zeros(9)
        return self

    def digit(self, name: str, value: float) -> int:
        return int(np.searchsorted(self.edges[name], value, side="right"))

    def vector(self, row: dict[str, float]) -> np.ndarray:
        v = []
        for n in self.names:
            if n.endswith(".usable"):
                v.append(float(f"{n[:-7]}.cover" in row))
            else:
                v.append(row.get(n, 0.0))
        return np.asarray(v, dtype=np.float64)

    def render(self, row: dict[str, float], task: str, pool: int) -> str:
        """The prompt: a header line, one line per usable tool (its decile digits in
        ``PER_TOOL`` order: one token each) and one line of pairwise agreements."""
        kind = "fixed" if row["fixed_pool"] else "tp"
        head = (f"{kind}{pool} {TASK_CODES.get(task, task)} h{self.digit('hist_len', row['hist_len'])}"
                f" x{self.digit('cold_share', row['cold_share'])}")  # fmt: skip
        present = [t for t in self.tools if f"{t}.cover" in row]
        lines = [head]
        for t in present:
            ks = [k for k in PER_TOOL if f"{t}.{k}" in row]
            lines.append(f"{t} " + "".join(str(self.digit(f"{t}.{k}", row[f"{t}.{k}"])) for k in ks))
        pairs = [str(self.digit(f"rho.{a}.{b}", row[f"rho.{a}.{b}"]))
                 for i, a in enumerate(present) for b in present[i + 1 :]]  # fmt: skip
        if pairs:
            lines.append("agree " + "".join(pairs))
        return "\n".join(lines)


def history_bucket(n: int) -> str:
    return "none" if n == 0 else "1-2 items" if n <= 2 else "3-10 items" if n <= 10 else "10+ items"


def bucket_prompt(
    task: str, pool_kind: str, pool: int, usable: list[str], first: bool, history_bucket: str
) -> str:
    """The ablation's prompt: today's bucket-level facts only (no per-episode statistics)."""
    kind = "fixed" if pool_kind == "fixed" else "tp"
    tools = " ".join([*usable, *([FIRST] if first else [])])
    return f"{kind}{pool} {TASK_CODES.get(task, task)} {history_bucket}\n{tools}"
