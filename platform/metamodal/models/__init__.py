"""Model registry. The zoo (BPR, LightGCN, VBPR, FREEDOM, fusion, MARGO, MAGNET, ...) joins here."""

from metamodal.models.base import Recommender
from metamodal.models.baselines import BASELINES, Popularity, Random

REGISTRY: dict[str, type[Recommender]] = {**BASELINES}

__all__ = ["REGISTRY", "Popularity", "Random", "Recommender"]
