"""Model registries: the reference baselines (fit + score, no training loop) and the zoo
(trained on Ray Train through ``metamodal.train``). One file per model; this is the one list."""

from metamodal.models.base import Recommender
from metamodal.models.bpr import BPR
from metamodal.models.dgmrec import DGMRec
from metamodal.models.dragon import DRAGON
from metamodal.models.early_fusion import EarlyFusion, ImputeMean, ImputeZero
from metamodal.models.freedom import FREEDOM
from metamodal.models.imputation import FeaturePropagation, GenerativeReconstruction
from metamodal.models.late_fusion import LateFusion
from metamodal.models.lgmrec import LGMRec
from metamodal.models.lightgcn import LightGCN
from metamodal.models.magnet import MAGNET
from metamodal.models.margo import MARGO
from metamodal.models.reference import BASELINES, Popularity, Random
from metamodal.models.vbpr import VBPR
from metamodal.models.zoo_base import ModelData, ZooModel

REGISTRY: dict[str, type[Recommender]] = {**BASELINES}

ZOO: dict[str, type[ZooModel]] = {
    m.name: m
    for m in (
        BPR,
        LightGCN,
        VBPR,
        FREEDOM,
        DRAGON,
        LGMRec,
        DGMRec,
        EarlyFusion,
        LateFusion,
        MARGO,
        MAGNET,
        ImputeZero,
        ImputeMean,
        FeaturePropagation,
        GenerativeReconstruction,
    )
}

__all__ = [
    "DGMRec",
    "DRAGON",
    "EarlyFusion",
    "FREEDOM",
    "FeaturePropagation",
    "GenerativeReconstruction",
    "MAGNET",
    "ImputeMean",
    "ImputeZero",
    "LGMRec",
    "LateFusion",
    "MARGO",
    "VBPR",
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
