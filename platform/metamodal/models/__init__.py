"""Model registries: the reference baselines (fit + score, no training loop) and the zoo
(trained on Ray Train through ``metamodal.train``). One file per model; this is the one list."""

from metamodal.models.base import Recommender
from metamodal.models.baselines import BASELINES, Popularity, Random
from metamodal.models.bpr import BPR
from metamodal.models.lightgcn import LightGCN
from metamodal.models.zoo_base import ModelData, ZooModel

REGISTRY: dict[str, type[Recommender]] = {**BASELINES}

ZOO: dict[str, type[ZooModel]] = {m.name: m for m in (BPR, LightGCN)}

__all__ = [
    "REGISTRY",
    "ZOO",
    "BPR",
    "LightGCN",
    "ModelData",
    "Popularity",
    "Random",
    "Recommender",
    "ZooModel",
]
