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


class _AlignRunBase(RunDir):
    """What both alignment modes' run directories share: a checkpoint, the per-epoch metrics
    and the report, under names each mode sets."""

    CHECKPOINT: ClassVar[str]
    METRICS: ClassVar[str]
    REPORT: ClassVar[str]

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def report_file(self) -> Path:
        return self.path / self.REPORT

    def report(self) -> AlignReport:
        self.check()
        if not self.report_file.is_file():
            raise FileNotFoundError(f"{self.report_file}: the alignment has not finished")
        return AlignReport.model_validate_json(self.report_file.read_text())

    def write_report(self, rep: AlignReport) -> None:
        write_json(self.report_file, rep.model_dump(), indent=2)


class AlignRun(_AlignRunBase):
    KIND: ClassVar[str] = "align"
    CHECKPOINT, METRICS, REPORT = "aligned.pt", "align_metrics.jsonl", "align_report.json"

    def write_report(self, rep: AlignReport) -> None:
        super().write_report(rep)
        write_json(self.path / "aligned.json", {"arch": rep.arch, "report": self.report_file.name})


class HeadsRun(_AlignRunBase):
    KIND: ClassVar[str] = "align_heads"
    CHECKPOINT, METRICS, REPORT = "heads.pt", "heads_metrics.jsonl", "heads_report.json"
