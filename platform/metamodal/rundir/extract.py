"""An extraction run: ``manifest.json`` (``ExtractManifest``, written when a pass ends) and one
folder per modality holding its encoder's ``config.json`` and parquet shards (item_id, idx,
modality, embedding, present, reason[, labels]). Each modality folder keeps its own
configuration guard, so modalities extract (and resume) independently."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from metamodal.rundir.base import Claim, RunDir, claim, write_json


class ModalityEntry(BaseModel):
    """One modality's line in the manifest. ``source``: the raw modality its encoder read, which
    is what a reader needs to rebuild it; the counts exist once the modality is complete."""

    model_config = ConfigDict(extra="allow")
    complete: bool
    source: Literal["text", "image"]
    random_init: bool = False
    present: int | None = None
    missing: int | None = None
    labelled: int | None = None
    reasons: dict[str, int] | None = None


class ExtractManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: int
    catalog: str
    config: dict[str, Any]
    modalities: dict[str, ModalityEntry]
    random_init: dict[str, bool]


class ExtractRun(RunDir):
    KIND: ClassVar[str] = "extract"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    def start(self, overwrite: bool) -> None:
        """Mark the directory as an extraction run (a directory of another layout refuses
        unless ``overwrite``; the modality folders then guard their own configurations)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if any(self.path.iterdir()) and self.header() is None and not overwrite:
            self.check()  # an older layout: refused with the version expected
        self._write_header()

    def claim_modality(self, name: str, conf: dict, overwrite: bool) -> Claim:
        return claim(self.path / name / "config.json", conf, overwrite, stale=["*"])

    def manifest(self) -> ExtractManifest:
        self.check()
        if not self.manifest_file.is_file():
            raise FileNotFoundError(f"{self.manifest_file}: no manifest — the extraction has not run to its end")
        return ExtractManifest.model_validate_json(self.manifest_file.read_text())

    def write_manifest(self, m: ExtractManifest) -> None:
        write_json(self.manifest_file, m.model_dump(), indent=2, default=str)
