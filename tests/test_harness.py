"""The Ray Train harness every trainer goes through (zoo, router, SASRec, keyword LLM)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_relative_run_directory_trains_where_the_caller_meant(
    tmp_path: Path, ray_session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`metamodal seq run --out runs/x` once failed: Ray Train read the relative storage path
    as a URI without a scheme. The run must land under the caller's working directory."""
    from metamodal.harness import RunSpec, fit

    def step(cfg: dict, w) -> None:
        (w.out / "seen.txt").write_text(f"{cfg['tag']} {w.rank}")

    monkeypatch.chdir(tmp_path)
    fit(step, {"tag": "ok"}, RunSpec(name="rel", out=Path("runs/rel")), require_checkpoint=False)
    run = tmp_path / "runs" / "rel"
    assert (run / "seen.txt").read_text() == "ok 0"
    assert (run / "ray_results" / "rel").is_dir()
