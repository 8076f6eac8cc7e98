"""A zoo model's training run: ``config.json`` (the resolved configuration), ``split/``,
``metrics.jsonl`` (one row per epoch), ``model.pt`` (the best epoch's weights), ``results.json``
(``ZooResults``, written last: its presence means the run finished) and ``curves.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from metamodal.rundir.base import RunDir, atomic_write, read_json, write_json


class ZooResults(BaseModel):
    """What a finished zoo run measured; ``test`` is None when tuning left the test part unread."""

    model_config = ConfigDict(extra="forbid")
    model: str
    dataset: str
    valid: dict[str, float]
    test: dict[str, float] | None
    test_slices: dict[str, Any] | None
    epochs: int
    best_epoch: int
    resumed_from: list[int]
    seconds_per_epoch: float | None
    eval_seconds: float
    wall_seconds: float
    modalities: list[str]
    missing: dict[str, Any] | None
    checkpoint: str
    retrieval: dict[str, Any] | None


class ZooRun(RunDir):
    KIND: ClassVar[str] = "zoo"
    STALE: ClassVar[list[str]] = ["ray_results", "split", "metrics.jsonl", ".failed_once",
                                  "results.json", "model.pt", "curves.png"]  # fmt: skip

    @property
    def results_file(self) -> Path:
        return self.path / "results.json"

    @property
    def model_file(self) -> Path:
        return self.path / "model.pt"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def split_dir(self) -> Path:
        return self.path / "split"

    def finished(self) -> bool:
        """A zoo run of this schema whose results are written (another layout raises)."""
        if not self.path.is_dir():
            return False
        self.check()
        return self.results_file.is_file()

    def results(self) -> ZooResults:
        self._require_finished()
        return ZooResults.model_validate_json(self.results_file.read_text())

    def _require_finished(self) -> None:
        if not self.finished():
            raise FileNotFoundError(f"{self.path}: no results.json — the run has not finished")

    def write_results(self, res: ZooResults) -> None:
        write_json(self.results_file, res.model_dump(), indent=2)

    def save_model(self, state: dict) -> None:
        import torch

        atomic_write(self.model_file, lambda tmp: torch.save(state, tmp))

    def load_finished(self) -> tuple[dict, dict]:
        """(config, model state) of a finished run, after one layout check: a reader needs
        both and must not take a run that is still going."""
        import torch

        self._require_finished()
        config = read_json(self.config_file)
        return config, torch.load(self.model_file, weights_only=True, map_location="cpu")
