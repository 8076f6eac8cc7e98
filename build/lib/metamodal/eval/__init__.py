"""Full-ranking evaluation (MMRec protocol) with per-slice reports."""

from metamodal.eval.metrics import DEFAULT_KS, METRICS, per_user_metrics
from metamodal.eval.protocol import evaluate_split, standard_slices
from metamodal.eval.ranking import EvalResult, evaluate, top_k

__all__ = [
    "DEFAULT_KS",
    "METRICS",
    "EvalResult",
    "evaluate",
    "evaluate_split",
    "per_user_metrics",
    "standard_slices",
    "top_k",
]
