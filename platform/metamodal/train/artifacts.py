"""Reading a finished training run back: its resolved configuration, split, missingness and
weights (``torch.load(weights_only=True)``: tensors only, never pickled objects). The agent's
baselines and the Serve deployments load models this way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metamodal.data import Dataset, load_dataset
from metamodal.data.missing import Missingness
from metamodal.data.splits import Split
from metamodal.models import ZOO, ModelData
from metamodal.models.zoo_base import ZooModel
from metamodal.rundir import ZooRun
from metamodal.storage import sync_down
from metamodal.train.data import attach_features, build_model_data, content_modalities


@dataclass
class TrainedRun:
    out: Path
    model: str
    config: dict  # the resolved configuration (config.json)
    ds: Dataset
    split: Split
    miss: Missingness | None
    modalities: list[str]
    state: dict[str, torch.Tensor]

    @property
    def params(self):
        return ZOO[self.model].Params(**self.config["params"])

    def model_data(self) -> ModelData:
        data, _ = build_model_data(
            self.ds, self.split, self.modalities, self.miss, self.config["data"]["normalise"]
        )
        return data

    def raw_features(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """name -> (raw rows, presence after the run's missingness)."""
        out = {}
        for name in self.modalities:
            mod = self.ds.modalities[name]
            present = self.miss.present[name] if self.miss else mod.present
            out[name] = (mod.features, present.copy())
        return out

    def build(self) -> ZooModel:
        torch.manual_seed(self.config["train"]["seed"])
        net = ZOO[self.model](self.model_data(), self.params)
        net.load_state_dict(self.state)
        net.eval()
        return net


def load_run(out: str | Path, ds: Dataset | None = None) -> TrainedRun:
    """A finished zoo run (``ZooRun``: another layout, or a run still going, raises)."""
    run = ZooRun(out)
    sync_down(run.path)  # a Serve replica on another node, an MMA run resumed elsewhere
    config, state = run.load_finished()
    if ds is None:
        if config["data"]["features"]:
            sync_down(config["data"]["features"])
        ds = attach_features(load_dataset(config["dataset"]), config["data"]["features"])
    split = Split.load(run.split_dir, ds)
    miss = Missingness.load(run.split_dir) if Missingness.saved(run.split_dir) else None
    names = content_modalities(ds, config["data"]["modalities"])
    return TrainedRun(run.path, config["model"], config, ds, split, miss, names, state)
