"""An extraction run: ``manifest.json`` (``ExtractManifest``, written when a pass ends) and one
folder per modality holding its encoder's ``config.json`` and parquet shards (item_id, idx,
modality, embedding, present, reason[, labels]). Each modality folder keeps its own
configuration guard, so modalities extract (and resume) independently."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from metamodal.rundir.base import Claim, LayoutError, RunDir, claim, file_sha256, write_json


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
    shard_sha256: dict[str, str] = {}  # shard file -> checksum, once complete: readers verify


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
        # a pass writes the manifest at its end: until then no reader may trust the last one
        self.manifest_file.unlink(missing_ok=True)

    def claim_modality(self, name: str, conf: dict, overwrite: bool) -> Claim:
        return claim(self.path / name / "config.json", conf, overwrite, stale=["*"])

    def manifest(self) -> ExtractManifest:
        self.check()
        if not self.manifest_file.is_file():
            raise FileNotFoundError(f"{self.manifest_file}: no manifest — the extraction has not run to its end")
        return ExtractManifest.model_validate_json(self.manifest_file.read_text())

    def write_manifest(self, m: ExtractManifest) -> None:
        write_json(self.manifest_file, m.model_dump(), indent=2, default=str)

    def shard_files(self, name: str) -> list[Path]:
        return sorted((self.path / name).glob("shard-*.parquet"))

    def shard_checksums(self, name: str) -> dict[str, str]:
        return {p.name: file_sha256(p) for p in self.shard_files(name)}

    def verified_shards(self, name: str, entry: ModalityEntry) -> Iterator[bytes]:
        """A complete modality's shards, each as the manifest recorded it: a shard missing,
        extra or changed since (an interrupted ``--overwrite``, a partial copy) is an error
        naming it, never features read from a mix of two extractions. The set of shards is
        checked now; each shard's bytes as the caller reads them (read once, hashed once)."""
        where = self.path / name
        if not entry.complete:
            raise ValueError(f"{where}: extraction incomplete; resume it with the same command")
        if not entry.shard_sha256:
            raise LayoutError(f"{self.manifest_file}: no shard checksums for {name!r} (written "
                              "before they existed): re-run the extraction with --overwrite")  # fmt: skip
        files = self.shard_files(name)
        for shard in sorted(set(entry.shard_sha256) ^ {p.name for p in files}):
            state = "missing" if shard in entry.shard_sha256 else "not in the manifest"
            raise ValueError(f"{where / shard}: {state} — the extraction was interrupted or "
                             "mixed; re-run it (the same command resumes)")  # fmt: skip
        return (_as_recorded(p, entry.shard_sha256[p.name]) for p in files)


def _as_recorded(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path}: checksum differs from the manifest's — a partial or replaced "
                         "shard; re-run the extraction")  # fmt: skip
    return data
