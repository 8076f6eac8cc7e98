"""The one configuration guard and atomic write every stage's output directory uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metamodal.config import ConfigError
from metamodal.rundir import claim, write_json


def test_a_directory_keeps_one_configuration_unless_overwritten(tmp_path: Path) -> None:
    conf = tmp_path / "config.json"
    assert claim(conf, {"lr": 0.1}, overwrite=False) == "new"
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "keep.txt").write_text("x")
    assert claim(conf, {"lr": 0.1}, overwrite=False) == "same"  # resumes: nothing removed
    assert (tmp_path / "metrics.jsonl").is_file()
    with pytest.raises(ConfigError, match="config.json: written with another configuration"):
        claim(conf, {"lr": 0.2}, overwrite=False)
    assert json.loads(conf.read_text()) == {"lr": 0.1}
    assert claim(conf, {"lr": 0.2}, overwrite=True, stale=["metrics.jsonl", "ckpt"]) == "replaced"
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "ckpt").exists()
    assert (tmp_path / "keep.txt").is_file() and json.loads(conf.read_text()) == {"lr": 0.2}
    assert claim(conf, {"lr": 0.3}, overwrite=True, stale=["*"]) == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_write_json_leaves_no_temporary_file_and_replaces_whole(tmp_path: Path) -> None:
    f = tmp_path / "deep" / "state.json"
    write_json(f, {"a": 1})
    write_json(f, {"b": [1, 2]}, indent=2)
    assert json.loads(f.read_text()) == {"b": [1, 2]}
    assert [p.name for p in f.parent.iterdir()] == ["state.json"]
