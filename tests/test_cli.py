"""The ``metamodal`` command and the demo job, run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "metamodal.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_inspect_json_and_text(small_shop: Path) -> None:
    r = cli("data", "inspect", str(small_shop), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["users"], s["items"]) == (240, 300) and s["interactions"] > 240 * 10 - 1
    assert set(s["modalities"]) == {"text", "image"} and 250 < s["modalities"]["image"] <= 300
    r = cli("data", "inspect", str(small_shop), "--format", "generic")
    assert r.returncode == 0 and "modalities" in r.stdout and "image" in r.stdout


def test_split_and_baselines(small_shop: Path, tmp_path: Path) -> None:
    r = cli(
        "data",
        "split",
        str(small_shop),
        "--out",
        str(tmp_path / "s"),
        "--item-rates",
        "text=0.5",
        "--cold-user-frac",
        "0.1",
        "--seed",
        "3",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["split"]["method"] == "mmrec" and out["missing"]["cold_users"] > 0
    assert {p.name for p in (tmp_path / "s").iterdir()} == {
        "split.npz",
        "split.json",
        "missing.npz",
        "missing.json",
    }
    r = cli(
        "eval",
        "baselines",
        str(small_shop),
        "--out",
        str(tmp_path / "b"),
        "--item-rates",
        "image=0.3",
    )
    assert r.returncode == 0, r.stderr
    assert "popularity" in r.stdout and "recall@20" in r.stdout
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert set(res["models"]) == {"popularity", "random"}
    assert (tmp_path / "b" / "results.png").stat().st_size > 1000


def test_bad_input_exits_2_with_location(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "items.jsonl").write_text('{"id": "a"}\n')
    (d / "interactions.csv").write_text("user_id,item_id\nu1,a\nu1,b\n")
    r = cli("data", "inspect", str(d))
    assert r.returncode == 2
    assert "interactions.csv, row 2, field 'item_id': unknown item id 'b'" in r.stderr
    r = cli("data", "split", str(d), "--out", str(tmp_path / "o"), "--item-rates", "text")
    assert r.returncode != 0 and "MODALITY=RATE" in r.stderr


def test_pipeline_on_a_movielens_latest_catalogue_then_kept_on_a_rerun(small_shop: Path, tmp_path: Path) -> None:
    """Up to alignment (the zoo, Tune, MMA and Serve stages have their own tests): real
    pretrained encoders, heads aligned over their features; the console stays free of Ray's
    chatter; a rerun keeps every finished stage."""
    from metamodal.data import load_dataset
    from metamodal.data.export import write_movielens_latest
    from metamodal.extract.shared_space import load_heads

    catalog = write_movielens_latest(load_dataset(small_shop), tmp_path / "ml-latest")
    out = tmp_path / "run"
    args = ("pipeline", str(catalog), "--out", str(out), "--quick", "--until", "align")
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["inspect", "split", "extract", "align"]
    assert [s["status"] for s in summary["stages"].values()] == ["ran"] * 4
    assert summary["stages"]["inspect"]["result"]["headline"].startswith("240 users, 300 items")
    manifest = json.loads(Path(summary["stages"]["extract"]["outputs"]["manifest"]).read_text())
    assert set(manifest["modalities"]) == {"text_minilm", "image_effnet"}  # ImageNet weights, not random
    assert not any("RANDOM" in w or "random" in w for w in summary["warnings"]), summary["warnings"]
    assert any(w.startswith("extract: ") and "have no image_effnet" in w for w in summary["warnings"])
    _, reads = load_heads(Path(summary["stages"]["align"]["outputs"]["heads"]) / "heads.pt")
    assert reads == {"text": "text_minilm", "image": "image_effnet"}  # over the extracted features
    res = json.loads((out / "baselines" / "results.json").read_text())
    assert res["missing"]["cold_users"] > 0 and res["missing"]["present"]["text"] < res["dataset"]["modalities"]["text"]
    chatter = ("logging_progress", "(TrainController", "Setting up process group", "Loading weights")
    assert not [c for c in chatter if c in r.stdout + r.stderr]
    assert "align heads epoch 10/10" in r.stdout and "Warnings" in r.stdout  # our lines stay
    page = (out / "summary.html").read_text()  # the stages' plots inlined: nothing to fetch
    assert "<table>" in page and 'src="data:image/png;base64,' in page and 'src="http' not in page

    r = cli(*args)
    assert r.returncode == 0, r.stderr
    again = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in again["stages"].values()] == ["kept"] * 4
    assert again["warnings"] == summary["warnings"]


def test_mma_reevaluate_refuses_a_run_made_with_another_configuration(
    small_shop: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mma"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"seeds": 7}))
    r = cli("mma", "run", "--dataset", str(small_shop), "--out", str(out), "--reevaluate")
    assert r.returncode == 2 and "--reevaluate needs" in r.stderr and "config.json" in r.stderr
    assert json.loads((out / "config.json").read_text()) == {"seeds": 7}  # left as it was


def test_options_are_declared_once_and_generated_for_the_cli_and_the_jobs() -> None:
    """One pydantic model gives both the typer command's options and the job's argparse flags:
    the same names, types, choices, defaults and help; both hand back the validated model."""
    from typing import Literal

    import typer
    from pydantic import BaseModel, Field
    from typer.testing import CliRunner

    from metamodal.cli import with_model_options
    from metamodal.config import parse_flags

    class Opts(BaseModel):
        out: Path = Field(description="where")
        size: int | None = Field(None, description="the size")
        rate: float = Field(0.5, ge=0)
        device: Literal["auto", "cpu"] | None = None
        text: bool = True
        set: list[str] = []
        rates: dict[str, float] = {}

    seen: dict = {}
    app = typer.Typer()

    @app.command()
    @with_model_options(Opts, into="o")
    def go(name: str, o: Opts) -> None:
        seen.update(o=o, name=name)

    runner = CliRunner()
    argv = ["--out", "d", "--size", "3", "--device", "cpu", "--no-text", "--set", "a=1",
            "--set", "b=2"]  # fmt: skip
    want = Opts(out=Path("d"), size=3, device="cpu", text=False, set=["a=1", "b=2"])
    res = runner.invoke(app, ["x", *argv])
    assert res.exit_code == 0, res.output
    assert seen == {"name": "x", "o": want}
    assert parse_flags(Opts, None, argv) == want
    for bad, word in ((["--device", "tpu"], "tpu"), (["--rate", "-1"], "--rate"), ([], "--out")):
        res = runner.invoke(app, ["x", *(["--out", "d"] if word != "--out" else []), *bad])
        assert res.exit_code == 2 and word in res.output, res.output


def test_every_command_and_job_offers_every_field_of_its_options() -> None:
    """The real commands and jobs: each field of a command's model is a flag of both."""
    import typer

    from metamodal.cli import app
    from metamodal.data.missing import MissingSpec
    from metamodal.data.synth import SynthConfig
    from metamodal.extract.options import (
        AlignConfig,
        ExtractOptions,
        KeywordOptions,
        SummariserConfig,
    )
    from metamodal.serving.config import ServeConfig
    from metamodal.workflows.options import (
        AlignIO,
        CatalogIO,
        MMARunOptions,
        PipelineJob,
        PipelineRun,
        SeqRunOptions,
        TrainOptions,
        TuneOptions,
    )

    group = typer.main.get_command(app)
    commands = {"extract": (CatalogIO, ExtractOptions), "align": (AlignIO, AlignConfig), "train": TrainOptions,
                "tune": TuneOptions, "serve": ServeConfig, "data synth": SynthConfig,
                "data split": MissingSpec, "eval baselines": MissingSpec, "mma run": MMARunOptions,
                "pipeline": PipelineRun, "seq run": SeqRunOptions,
                "keywords": (CatalogIO, KeywordOptions), "tune-summariser": (CatalogIO, SummariserConfig)}  # fmt: skip
    for name, model in commands.items():
        cmd = group
        for part in name.split():
            cmd = cmd.commands[part]
        assert set(_fields(model)) <= {p.name for p in cmd.params}, name
    jobs = {"train.py": TrainOptions, "tune_fusion.py": TuneOptions, "train_policy.py": MMARunOptions,
            "pipeline.py": (PipelineJob, SynthConfig), "extract_embeddings.py": (CatalogIO, ExtractOptions),
            "align_clip.py": (AlignIO, AlignConfig), "seq_run.py": SeqRunOptions,
            "keywords.py": (CatalogIO, KeywordOptions)}  # fmt: skip
    fresh = subprocess.run([sys.executable, str(ROOT / "jobs" / "pipeline.py"), "--help"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr  # a job runs as a script in a new interpreter
    for job, model in jobs.items():  # the rest as __main__ in this one (its imports are loaded)
        stdout = fresh.stdout if job == "pipeline.py" else _job_help(ROOT / "jobs" / job)
        for field in _fields(model):
            shown = field if field == "catalog" else "--" + field.replace("_", "-")
            assert shown in stdout, (job, field)


def _job_help(job: Path) -> str:
    import contextlib
    import io
    import runpy

    out, argv = io.StringIO(), sys.argv
    sys.argv = [str(job), "--help"]
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            runpy.run_path(str(job), run_name="__main__")
    finally:
        sys.argv = argv
    assert done.value.code in (0, None), (job, out.getvalue())
    return out.getvalue()


def _fields(models) -> list[str]:
    return [f for m in (models if isinstance(models, tuple) else (models,)) for f in m.model_fields]
