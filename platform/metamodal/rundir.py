"""What every stage's output directory shares: JSON state written atomically (a reader, or a
run resumed after a kill, never sees half a file) and the guard that keeps one configuration
per directory — the same configuration again resumes, another one refuses unless the caller
overwrites, and then the stale state named by the caller goes first."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from metamodal.config import ConfigError


def write_json(path: str | Path, obj: Any, **dumps: Any) -> None:
    """``obj`` as JSON at ``path``, via a sibling temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, **dumps))
    os.replace(tmp, path)


def claim(
    conf_path: str | Path, conf: dict, overwrite: bool, stale: list[str] | None = None
) -> Literal["new", "same", "replaced"]:
    """Record ``conf`` as the configuration of ``conf_path``'s directory. ``stale``: paths in
    that directory that belong to the old configuration (removed when it is overwritten;
    ``["*"]`` for everything but the config file)."""
    conf_path = Path(conf_path)
    d = conf_path.parent
    old = json.loads(conf_path.read_text()) if conf_path.is_file() else None
    if old is not None and old == conf:
        return "same"
    if old is not None:
        if not overwrite:
            raise ConfigError(f"{conf_path}: written with another configuration; use a new "
                              "--out or --overwrite")  # fmt: skip
        names = [p.name for p in d.iterdir() if p != conf_path] if stale == ["*"] else stale or []
        for name in names:
            p = d / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    write_json(conf_path, conf, indent=2)
    return "new" if old is None else "replaced"
