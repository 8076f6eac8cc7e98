"""An alignment run: ``config.json``, ``pairs.npz`` (the image-text pairs and their split),
``align_metrics.jsonl``, ``aligned.pt`` (the best epoch's open_clip weights) with its
``aligned.json`` sidecar (the architecture, which extraction reads), ``aligned_heads.pt`` and
``align_report.json`` (``AlignReport``). A heads-mode run (``HeadsRun``): ``config.json``,
``heads_pairs.npz``, ``heads_metrics.jsonl``, ``heads.pt`` (the projection heads and what they
read) and ``heads_report.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from metamodal.rundir.base import RunDir, write_json


class AlignReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: str
    config: dict[str, Any]
    pairs: dict[str, Any]  # counts per split, and what was skipped and why
    random_init: bool
    test_before: dict[str, float]
    test_after: dict[str, float]
    best_epoch: int
    epochs: list[dict[str, Any]]
    checkpoint: str
    seconds: float


class AlignRun(RunDir):
    KIND: ClassVar[str] = "align"

    @property
    def checkpoint(self) -> Path:
        return self.path / "aligned.pt"

    @property
    def metrics_file(self) -> Path:
        return self.path / "align_metrics.jsonl"

    @property
    def report_file(self) -> Path:
        return self.path / "align_report.json"

    def report(self) -> AlignReport:
        self.check()
        if not self.report_file.is_file():
            raise FileNotFoundError(f"{self.report_file}: the alignment has not finished")
        return AlignReport.model_validate_json(self.report_file.read_text())

    def write_report(self, rep: AlignReport) -> None:
        write_json(self.report_file, rep.model_dump(), indent=2)
        write_json(self.path / "aligned.json", {"arch": rep.arch, "report": self.report_file.name})


class HeadsRun(RunDir):
    KIND: ClassVar[str] = "align_heads"

    @property
    def checkpoint(self) -> Path:
        return self.path / "heads.pt"

    @property
    def metrics_file(self) -> Path:
        return self.path / "heads_metrics.jsonl"

    @property
    def report_file(self) -> Path:
        return self.path / "heads_report.json"

    def report(self) -> AlignReport:
        self.check()
        if not self.report_file.is_file():
            raise FileNotFoundError(f"{self.report_file}: the alignment has not finished")
        return AlignReport.model_validate_json(self.report_file.read_text())

    def write_report(self, rep: AlignReport) -> None:
        write_json(self.report_file, rep.model_dump(), indent=2)
