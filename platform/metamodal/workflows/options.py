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


class DemoOptions(Options):
    out: Path = Field(Path("runs/demo"), description="demo directory")
    stop_after: int = Field(11, ge=1, le=11, description="last step (6: end after extraction)")
