"""Layered configuration, MMRec style: dataset → model → the dataset's tuned values for the
model → overrides, validated into typed objects that reject unknown keys and bad values with a
message naming the layer and key.

The code holds every default (the pydantic fields here and each model's ``Params``); a YAML
layer holds only what differs from them, never a copy (``tests/test_layers.py`` checks). A
dataset's file (``configs/datasets/<name>.yaml``, ``<name>`` the name the dataset declares) has
settings for every model at its top level and, under ``models.<model>``, the values the
platform's own Ray Tune sweep chose for that model on that dataset's validation split
(``benchmarks/tune_defaults.py`` writes them).

Overrides come as ``key.path=value`` strings (``train.lr=0.01``, ``params.n_layers=2``) or an
override YAML file (what ``metamodal tune`` writes for its best trial).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from metamodal.config import ConfigError, merge_layers, parse_override
from metamodal.data.loaders import dataset_name
from metamodal.data.missing import MissingSpec
from metamodal.eval.metrics import METRICS

VALID_KS = (10, 20)  # the cut-offs validation computes each evaluated epoch
VALID_METRICS = tuple(f"{m}@{k}" for m in METRICS for k in VALID_KS)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainSection(Strict):
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(2048, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(20, ge=1)
    eval_every: int = Field(1, ge=1)
    valid_metric: str = "recall@20"  # early stopping and the kept epoch; one of VALID_METRICS
    seed: int = 0
    workers: int = Field(1, ge=1)
    # where the workers go: PACK fills a node first; STRICT_SPREAD puts each on its own node
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    use_gpu: bool | None = None
    threads: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0)
    retrieval_check: bool = True  # after training: faiss indexes vs exact top-k of the vectors
    fail_at_epoch: int | None = None  # fault injection: kill the worker once there (resume tests)

    @field_validator("valid_metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        """Checked here, before Ray starts: a typo would otherwise fail after epoch 1."""
        if v not in VALID_METRICS:
            raise ValueError(f"unknown metric {v!r}; validation computes {', '.join(VALID_METRICS)}")
        return v


class SplitSection(Strict):
    method: Literal["mmrec", "loo", "time", "user_time", "given"] | None = None
    seed: int = 0


class DataSection(Strict):
    features: str | None = None  # an extraction output dir whose modalities join the dataset
    modalities: list[str] | None = None  # content modalities to use; None: every feature modality
    # Feature rows as the models see them. "center_l2": subtract the mean over the items that have
    # the modality, then unit-normalise. lfm2k's vggish rows are 99% one shared mean vector
    # (norm ~1450), which swamps linear projections and makes cosine kNN graphs near-uniform.
    normalise: Literal["none", "l2", "center_l2"] = "center_l2"


class RunConfig(Strict):
    model: str
    dataset: str
    train: TrainSection = TrainSection()
    split: SplitSection = SplitSection()
    data: DataSection = DataSection()
    missing: MissingSpec = MissingSpec()
    params: dict[str, Any] = {}


def _package_yaml(rel: str) -> dict:
    f = resources.files("metamodal") / "configs" / rel
    return yaml.safe_load(f.read_text()) or {} if f.is_file() else {}


def package_layers(model: str, dataset_name: str) -> list[tuple[str, dict]]:
    """The package's YAML layers for one run, each named as an error should name it."""
    ds_file = f"datasets/{dataset_name}.yaml"
    ds_layer = _package_yaml(ds_file)
    if not isinstance(ds_layer, dict):
        raise ConfigError(f"{ds_file}: expected a mapping at the top level")
    tuned = ds_layer.get("models") or {}
    if not isinstance(tuned, dict):
        raise ConfigError(f"{ds_file}: models: expected a mapping of model name to its values")
    return [
        (ds_file, {k: v for k, v in ds_layer.items() if k != "models"}),
        (f"models/{model}.yaml", _package_yaml(f"models/{model}.yaml")),
        (f"{ds_file} models.{model}", tuned.get(model) or {}),
    ]


def load_config(
    model: str,
    dataset: str | Path,
    overrides: list[str] | None = None,
    override_file: str | Path | None = None,
) -> tuple[RunConfig, BaseModel]:
    """The merged, validated run config and the model's typed parameters."""
    from metamodal.models import ZOO

    if model not in ZOO:
        raise ConfigError(f"unknown model {model!r}; the zoo has {sorted(ZOO)}")
    layers = package_layers(model, dataset_name(dataset))
    if override_file:
        layers.append((str(override_file), yaml.safe_load(Path(override_file).read_text()) or {}))
    for o in overrides or []:
        layers.append((f"override {o!r}", parse_override(o)))
    merged: dict = {"model": model, "dataset": str(dataset)}
    for where, layer in layers:
        if not isinstance(layer, dict):
            raise ConfigError(f"{where}: expected a mapping at the top level")
        merged = merge_layers(merged, layer)
        try:
            RunConfig.model_validate(merged)  # fail at the layer that broke it
        except ValidationError as e:
            raise ConfigError(f"{where}: {_explain(e)}") from None
    cfg = RunConfig.model_validate(merged)
    try:
        params = ZOO[model].Params.model_validate(cfg.params)
    except ValidationError as e:
        raise ConfigError(f"params of {model}: {_explain(e)}") from None
    return cfg, params


def _explain(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
