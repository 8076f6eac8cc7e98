"""What every stage's output directory shares: a ``run.json`` header naming the kind of run
and the layout's schema version, JSON state written atomically (a reader, or a run resumed
after a kill, never sees half a file), and the guard that keeps one configuration per
directory — the same configuration again resumes, another one refuses unless the caller
overwrites, and then the stale state named by the caller goes first.

A directory written before the header existed, or by another schema, is refused with the
version expected: there are no compatibility shims that read older layouts."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from metamodal.config import ConfigError
from metamodal.storage import file_sha256

SCHEMA_VERSION = 2  # 1: the layouts before run directories carried run.json

Claim = Literal["new", "same", "replaced"]


class LayoutError(ConfigError):
    """A run directory of another kind or schema than the reader expects."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a sibling temporary file, then rename it over ``path``: a reader, or a
    run resumed after a kill, finds the old file or the new one, never half of one. A write
    that fails (a full disk) removes its temporary file and names the file it was for."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        _fsync(tmp)  # the bytes on disk before the name points at them (a power cut, a node lost)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"{path}: not written ({e.strerror or e}); the previous "
                      "version, if there was one, is intact") from e  # fmt: skip
    with contextlib.suppress(OSError):  # not every filesystem syncs a folder
        _fsync(path.parent)  # the rename itself


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any, **dumps: Any) -> None:
    """``obj`` as JSON at ``path``, written atomically."""
    text = json.dumps(obj, **dumps)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> Any:
    """A state file's JSON; one that does not parse (cut short by a writer from before atomic
    writes, or damaged) is a ``LayoutError`` naming it, not a stack trace."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: unreadable ({e}); re-run into a new directory or with "
                          "--overwrite") from None  # fmt: skip


def save_arrays(npz: Path, meta_file: Path, arrays: dict[str, Any], meta: dict) -> None:
    """Arrays and their JSON description as one unit: the arrays first, then the JSON naming
    their checksum, each atomically. The JSON is the commit: without it the pair was never
    saved, and ``load_arrays`` refuses arrays that are not the ones it names."""
    import numpy as np

    def arrays_to(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy would add .npz to a .tmp name
            np.savez_compressed(f, **arrays)

    atomic_write(npz, arrays_to)
    write_json(meta_file, {**meta, "arrays_sha256": file_sha256(npz)}, indent=2)


def load_arrays(npz: Path, meta_file: Path) -> tuple[dict, Any]:
    """(the JSON, the arrays) that ``save_arrays`` wrote together."""
    import numpy as np

    meta = read_json(meta_file)
    if "arrays_sha256" not in meta:
        raise LayoutError(f"{meta_file}: no checksum of {npz.name} (written before saves were "
                          "checked): re-run into a new directory or with --overwrite")  # fmt: skip
    data = npz.read_bytes()  # read once: hashed, then parsed
    if meta["arrays_sha256"] != hashlib.sha256(data).hexdigest():
        raise LayoutError(f"{npz}: not the arrays {meta_file.name} describes (a save cut short, "
                          "or files from two runs): re-run into a new directory or with --overwrite")  # fmt: skip
    return meta, np.load(io.BytesIO(data))


def claim(
    conf_path: str | Path,
    conf: dict,
    overwrite: bool,
    stale: list[str] | None = None,
    same: Callable[[dict, dict], bool] | None = None,
) -> Claim:
    """Record ``conf`` as the configuration of ``conf_path``'s directory. ``stale``: paths in
    that directory that belong to the old configuration (removed when it is overwritten;
    ``["*"]`` for everything but the config file). ``same(old, new)``: when two configurations
    count as one (default: equal)."""
    conf_path = Path(conf_path)
    old = _old_config(conf_path, overwrite)
    if old is not None and (same or (lambda a, b: a == b))(old, conf):
        write_json(conf_path, conf, indent=2)  # a same-run difference (a seed count) is kept
        return "same"
    if old is not None:
        if not overwrite:
            raise ConfigError(f"{conf_path}: written with another configuration; use a new "
                              "--out or --overwrite")  # fmt: skip
        _remove(conf_path.parent, stale, keep=conf_path)
    write_json(conf_path, conf, indent=2)
    return "new" if old is None else "replaced"


def _old_config(conf_path: Path, overwrite: bool) -> dict | None:
    """The recorded configuration; an unreadable one counts as another configuration."""
    if not conf_path.is_file():
        return None
    try:
        return read_json(conf_path)
    except LayoutError:
        if not overwrite:
            raise
        return {"unreadable": str(conf_path)}


def _remove(d: Path, stale: list[str] | None, keep: Path) -> None:
    names = [p.name for p in d.iterdir() if p != keep] if stale == ["*"] else stale or []
    for name in names:
        p = d / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


class RunHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    schema_version: int


class RunDir(BaseModel):
    """One stage's output directory. Subclasses name their ``KIND`` and the files they hold;
    readers go through ``check`` (or a method that calls it) before trusting any file."""

    model_config = ConfigDict(frozen=True)
    KIND: ClassVar[str] = ""
    STALE: ClassVar[list[str]] = ["*"]  # what a replaced configuration leaves behind
    path: Path

    def __init__(self, path: str | Path, /) -> None:
        super().__init__(path=Path(path))

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def header_file(self) -> Path:
        return self.path / "run.json"

    def header(self) -> RunHeader | None:
        f = self.header_file
        return RunHeader.model_validate(read_json(f)) if f.is_file() else None

    def check(self) -> None:
        """Refuse a directory that is not this kind of run at this schema, saying which."""
        h = self.header()
        if h is None:
            raise LayoutError(
                f"{self.path}: expected a run directory of kind {self.KIND!r}, schema "
                f"{SCHEMA_VERSION}; it has no run.json (not a run directory, or written by an "
                "older MetaModal): re-run it into a new directory or with --overwrite"
            )
        if (h.kind, h.schema_version) != (self.KIND, SCHEMA_VERSION):
            raise LayoutError(
                f"{self.header_file}: kind {h.kind!r}, schema {h.schema_version}; expected kind "
                f"{self.KIND!r}, schema {SCHEMA_VERSION} (re-run it with --overwrite)"
            )

    def config(self) -> dict:
        self.check()
        return read_json(self.config_file)

    def claim(
        self, conf: dict, overwrite: bool, same: Callable[[dict, dict], bool] | None = None
    ) -> Claim:
        """Make this directory a run of ``conf``: resume it, refuse it, or replace it (an older
        layout counts as another configuration)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.header_file.is_file() or self.config_file.is_file():
            try:
                self.check()
            except LayoutError:
                if not overwrite:
                    raise
                _remove(self.path, self.STALE, keep=self.config_file)
                self.config_file.unlink(missing_ok=True)
        status = claim(self.config_file, conf, overwrite, self.STALE, same)
        self._write_header()
        return status

    def _write_header(self) -> None:
        write_json(self.header_file, RunHeader(kind=self.KIND, schema_version=SCHEMA_VERSION).model_dump())
