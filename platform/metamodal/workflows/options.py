"""What each entry point takes, declared once: ``metamodal train|tune|mma run`` and
``jobs/train.py``, ``jobs/tune_fusion.py``, ``jobs/train_policy.py`` and ``jobs/pipeline.py`` all
generate their flags from these fields (``cli.with_model_options``, ``config.parse_flags``), so a
flag, its default and its help cannot drift between the two. Light on purpose: the CLI imports
it before any torch or Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# options several entry points share, declared once
FORMAT_HELP = ("generic|movielens|movielens_latest|movielens_1m|lattice|recbole|mmrec "
               "(default: autodetect)")  # fmt: skip
DatasetDir = Annotated[Path, Field(description="dataset directory")]
Overrides = Annotated[list[str], Field(description="override key.path=value (repeatable)")]
Overwrite = Annotated[bool, Field(description="replace a run made with another config")]


class Options(BaseModel):
    """An entry point's options: unknown ones refused, values fixed once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogIO(Options):
    """A stage that reads a catalogue and writes one directory (extraction, alignment)."""

    catalog: Path = Field(description="the catalogue (any format the data layer loads)",
                          json_schema_extra={"positional": True})  # fmt: skip
    out: Path = Field(description="output directory")
    format: str | None = Field(None, description=FORMAT_HELP)


class AlignIO(CatalogIO):
    split: Path | None = Field(None, description="a saved split: co-interactions come from its train part only")  # fmt: skip
    features: Path | None = Field(None, description="heads mode: the extraction run whose text and image features are the frozen encoders' (default: the catalog's own feature matrices)")  # fmt: skip
    overwrite: Overwrite = False


class TrainOptions(Options):
    model: str = Field(description="zoo model name (metamodal.models.ZOO)")
    dataset: DatasetDir
    out: Path = Field(description="run directory")
    set: Overrides = []
    config: Path | None = Field(None, description="override YAML file (e.g. Tune's best.yaml)")
    overwrite: Overwrite = False


class TuneOptions(Options):
    space: Path = Field(description="search space YAML (tune_spaces/*.yaml)")
    dataset: DatasetDir
    out: Path = Field(description="sweep directory (trials.md, best.yaml, plots)")
    samples: int | None = Field(None, ge=1, description="trials (default: the space's)")
    max_epochs: int | None = Field(None, ge=1, description="epochs per trial at most")
    concurrent: int | None = Field(None, ge=1, description="trials at once")
    set: Overrides = []  # fixed for every trial
    wandb: bool = Field(True, description="log to wandb (offline unless WANDB_MODE)")


class MMARunOptions(Options):
    dataset: DatasetDir
    out: Path = Field(description="run directory (report.json, report.md, plots)")
    quick: bool = Field(False, description="the demo's budget: short runs, few steps")
    seeds: int | None = Field(None, ge=1, description="policy seeds (default 3)")
    split: Literal["mmrec", "time"] | None = Field(
        None, description="mmrec (per-user random 8:1:1) or time (per-user chronological)"
    )
    set: Overrides = []  # e.g. policy.rl_epochs=3
    reevaluate: bool = Field(
        False, description="keep OUT's trained policies (same configuration), evaluate again"
    )

    def overrides(self) -> list[str]:
        """``--set`` items, with ``--split`` as the override it stands for."""
        split = {"time": "user_time"}.get(self.split, self.split)
        return [*self.set, *([f"split={split}"] if split else [])]


class SeqRunOptions(Options):
    dataset: DatasetDir
    out: Path = Field(description="run directory (report.json, report.md, report.png)")
    features: Path | None = Field(None, description="an extraction run (metamodal extract --out DIR): mm_sasrec's content")  # fmt: skip
    keywords: Path | None = Field(None, description="a keywords run (metamodal keywords --out DIR): adds keyword_llm")  # fmt: skip
    quick: bool = Field(False, description="the demo's budget: a small encoder, few epochs, 1 seed")
    seeds: int | None = Field(None, ge=1, description="seeds (default 3)")
    set: Overrides = []  # e.g. train.epochs=30, sasrec.dim=128

    def overrides(self) -> list[str]:
        paths = {"features": self.features, "keywords": self.keywords}
        return [*self.set, *(f"{k}={v}" for k, v in paths.items() if v)]


STAGES = ("inspect", "split", "extract", "align", "zoo", "tune", "mma", "evaluate", "seq", "serve")


class PipelineOptions(Options):
    """``metamodal pipeline``'s and ``jobs/pipeline.py``'s choices (the catalogue apart)."""

    out: Path = Field(description="pipeline directory (summary.json, one folder per stage)")
    quick: bool = Field(False, description="minutes, not hours: short zoo runs and sweep, MMA's quick preset, 1 seed")
    serve: bool = Field(False, description="end by serving retriever + MMA over HTTP on 127.0.0.1 for a few requests")
    verbose: bool = Field(False, description="show Ray's own worker, controller and Ray Data output")
    until: Literal[STAGES] | None = Field(None, description="last stage to run (default: all)")  # type: ignore[valid-type]
    seeds: int | None = Field(None, ge=1, description="MMA policy seeds (default 3; 1 with --quick)")
    split: Literal["mmrec", "time"] | None = Field(None, description="MMA's split: mmrec (default) or time (per-user chronological)")  # fmt: skip
    item_missing: float = Field(0.3, ge=0, lt=1, description="share of items whose text / image is dropped")
    cold_users: float = Field(0.1, ge=0, lt=1, description="share of users whose history is withheld")
    cold_items: float = Field(0.1, ge=0, lt=1, description="share of items never seen in training")


class PipelineRun(PipelineOptions):
    catalog: Path = Field(description="the catalogue (any format the data layer loads)",
                          json_schema_extra={"positional": True})  # fmt: skip


class PipelineJob(PipelineOptions):
    """``jobs/pipeline.py``: without ``--catalog`` it generates the synthetic shop (``make demo``)."""

    out: Path = Field(Path("runs/demo"), description="pipeline directory (summary.json, one folder per stage)")
    catalog: Path | None = Field(None, description="the catalogue; default: generate the synthetic shop into OUT/catalog")  # fmt: skip


class MonitorOptions(Options):
    reference: Path = Field(description="the reference extraction run (a `metamodal extract` output)",
                            json_schema_extra={"positional": True})  # fmt: skip
    current: Path = Field(description="the current extraction run, or a catalogue (extracted with the reference's encoders)",
                          json_schema_extra={"positional": True})  # fmt: skip
    out: Path = Field(description="output directory (monitor.json, monitor.md, plots)")
    zoo: Path | None = Field(None, description="a trained zoo run: its fused score's calibration per modality pattern")  # fmt: skip
    format: str | None = Field(None, description=FORMAT_HELP)
    max_rows: int = Field(1000, ge=20, description="present items per run the drift tests read at most")
