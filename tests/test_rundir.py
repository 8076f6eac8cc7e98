"""Run directories: the one configuration guard, the atomic write, the kind-and-schema header
and the typed records every stage writes and reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from metamodal.config import ConfigError
from metamodal.rundir import (
    SCHEMA_VERSION,
    LayoutError,
    MMARun,
    ZooResults,
    ZooRun,
    claim,
    write_json,
)


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


def _results(**kw) -> ZooResults:
    base = dict(model="bpr", dataset="d", valid={"recall@20": 0.5}, test=None, test_slices=None,
                epochs=3, best_epoch=2, resumed_from=[], seconds_per_epoch=0.1, eval_seconds=0.0,
                wall_seconds=1.0, modalities=[], missing=None, checkpoint="model.pt", retrieval=None)  # fmt: skip
    return ZooResults(**{**base, **kw})


def test_a_run_directory_names_its_kind_and_schema_and_refuses_others(tmp_path: Path) -> None:
    run = ZooRun(tmp_path / "zoo")
    assert not run.finished()  # nothing there yet
    assert run.claim({"lr": 0.1}, overwrite=False) == "new"
    header = json.loads(run.header_file.read_text())
    assert header == {"kind": "zoo", "schema_version": SCHEMA_VERSION}
    run.write_results(_results())
    assert run.finished() and run.results() == _results()
    # a reader of another kind is told what it found and what it expected
    with pytest.raises(LayoutError, match=f"kind 'zoo', schema {SCHEMA_VERSION}; expected kind 'mma'"):
        MMARun(run.path).config()
    # the layout before run.json: every reader names the version expected; no shim reads it
    run.header_file.unlink()
    with pytest.raises(LayoutError, match=f"kind 'zoo', schema {SCHEMA_VERSION}; it has no run.json"):
        run.finished()
    with pytest.raises(LayoutError, match="no run.json"):
        run.claim({"lr": 0.1}, overwrite=False)  # not even the same configuration resumes it
    assert run.claim({"lr": 0.1}, overwrite=True) == "new"  # replaced, its results gone
    assert not run.finished() and run.header() is not None


def test_typed_results_refuse_a_missing_or_unknown_field(tmp_path: Path) -> None:
    run = ZooRun(tmp_path)
    run.claim({"lr": 0.1}, overwrite=False)
    rec = _results().model_dump()
    run.results_file.write_text(json.dumps({**rec, "surprise": 1}))
    with pytest.raises(ValidationError, match="surprise"):
        run.results()
    del rec["best_epoch"]
    run.results_file.write_text(json.dumps(rec))
    with pytest.raises(ValidationError, match="best_epoch"):
        run.results()


def test_an_mma_run_extends_its_seed_count_and_retrains_a_changed_config(tmp_path: Path) -> None:
    run = MMARun(tmp_path)
    assert not run.holds({"pool": 20, "seeds": 3})
    assert run.claim_config({"pool": 20, "seeds": 3}) == "new"
    run.write_seed_result(0, {"ooma": 0.2})
    assert run.holds({"pool": 20, "seeds": 5})  # more seeds: the same run, extended
    assert run.claim_config({"pool": 20, "seeds": 5}) == "same"
    assert run.config()["seeds"] == 5 and run.seed_result(0) == {"ooma": 0.2}
    assert run.claim_config({"pool": 30, "seeds": 5}) == "replaced"  # never refuses
    assert run.zoo("lightgcn").path == tmp_path / "zoo" / "lightgcn"


def test_a_write_cut_short_leaves_the_previous_state_and_the_next_run_carries_on(
    tmp_path: Path, monkeypatch
) -> None:
    """A kill between write and rename, and a full disk: the previous file stays whole, no
    half-written state is ever read, and the error names the file."""
    import errno

    from metamodal.rundir import base

    f = tmp_path / "results.json"
    write_json(f, {"v": 1})
    real = base.os.replace

    def killed(*a):
        raise KeyboardInterrupt  # the process dies after writing, before renaming

    monkeypatch.setattr(base.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_json(f, {"v": 2})
    monkeypatch.setattr(base.os, "replace", real)
    assert json.loads(f.read_text()) == {"v": 1} and (tmp_path / "results.json.tmp").exists()
    write_json(f, {"v": 2})  # the next run writes over the leftover
    assert json.loads(f.read_text()) == {"v": 2} and not (tmp_path / "results.json.tmp").exists()

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match=r"results.json: not written \(No space left on device\); the previous"):
        write_json(f, {"v": 3})
    monkeypatch.undo()
    assert json.loads(f.read_text()) == {"v": 2} and not (tmp_path / "results.json.tmp").exists()


def test_a_damaged_config_refuses_naming_the_file_and_overwrite_replaces_it(tmp_path: Path) -> None:
    run = ZooRun(tmp_path / "z")
    run.claim({"a": 1}, overwrite=False)
    run.config_file.write_text('{"a": ')  # cut short by a writer from before atomic writes
    with pytest.raises(LayoutError, match=r"config.json: unreadable"):
        run.claim({"a": 1}, overwrite=False)
    assert run.claim({"a": 1}, overwrite=True) == "replaced" and run.config() == {"a": 1}


def test_split_and_masks_are_saved_as_one_unit(tmp_path: Path, monkeypatch) -> None:
    """The arrays go first and the JSON naming their checksum last: a save cut in between
    leaves no split (the next run draws it again); arrays from another save are refused."""
    import numpy as np

    from metamodal.data.splits import Split
    from metamodal.rundir import base

    sp = Split("mmrec", 0, np.arange(5), np.arange(5, 7), np.arange(7, 9))
    real = base.write_json
    monkeypatch.setattr(base, "write_json", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        sp.save(tmp_path / "s")
    monkeypatch.setattr(base, "write_json", real)
    assert (tmp_path / "s" / "split.npz").is_file() and not Split.saved(tmp_path / "s")
    sp.save(tmp_path / "s")
    assert Split.saved(tmp_path / "s") and list(Split.load(tmp_path / "s").test) == [7, 8]
    other = Split("mmrec", 1, np.arange(4), np.arange(4, 7), np.arange(7, 9))
    other.save(tmp_path / "o")
    (tmp_path / "s" / "split.npz").write_bytes((tmp_path / "o" / "split.npz").read_bytes())
    with pytest.raises(LayoutError, match="split.npz: not the arrays split.json describes"):
        Split.load(tmp_path / "s")
