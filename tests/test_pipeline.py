"""``metamodal pipeline``: the stage runner's keep/rerun rules with plain-function stages, the
quiet console's line filter, and the MovieLens-latest export the end-to-end run reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metamodal.workflows.options import PipelineOptions
from metamodal.workflows.pipeline import Stage, run_pipeline


def _stages(calls: list[str], knob: dict) -> list[Stage]:
    """Three stages that write one file each; ``knob`` is the second stage's configuration."""

    def make(name: str, warn: str | None = None):
        def run(ctx):
            calls.append(name)
            path = ctx.out / f"{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{name} {knob}")
            return {"outputs": {"file": path}, "warnings": [warn] if warn else [],
                    "result": {"headline": f"{name} made"}}  # fmt: skip

        return run

    return [
        Stage("a", "first", lambda ctx: {}, make("a")),
        Stage("b", "second", lambda ctx: dict(knob), make("b", "b: 3 records skipped")),
        Stage("na", "never here", lambda ctx: {}, make("na"), lambda ctx: "needs images"),
        Stage("c", "third", lambda ctx: {}, make("c")),
    ]


def test_finished_stages_are_kept_and_a_change_reruns_that_stage_and_the_ones_after(tmp_path: Path) -> None:
    catalog = tmp_path / "cat"
    catalog.mkdir()
    (catalog / "items.csv").write_text("x\n")
    opts = PipelineOptions(out=tmp_path / "run")
    calls: list[str] = []
    knob = {"lr": 1}
    s = run_pipeline(opts, catalog, _stages(calls, knob))
    assert calls == ["a", "b", "c"]
    assert {k: e["status"] for k, e in s["stages"].items()} == {"a": "ran", "b": "ran", "na": "not applicable", "c": "ran"}
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["stages"]["c"]["outputs"]["file"] == str(tmp_path / "run" / "c.txt")
    assert written["warnings"] == ["b: 3 records skipped"] and "needs images" in (tmp_path / "run" / "summary.md").read_text()

    calls.clear()
    s = run_pipeline(opts, catalog, _stages(calls, knob))
    assert calls == [] and {e["status"] for k, e in s["stages"].items() if k != "na"} == {"kept"}
    assert s["warnings"] == ["b: 3 records skipped"]  # a kept stage's warnings are still said

    knob["lr"] = 2  # the second stage's configuration changes: it and the third run again
    run_pipeline(opts, catalog, _stages(calls, knob))
    assert calls == ["b", "c"]

    calls.clear()
    (tmp_path / "run" / "c.txt").unlink()  # an output gone: that stage runs again
    run_pipeline(opts, catalog, _stages(calls, knob))
    assert calls == ["c"]

    calls.clear()
    (catalog / "items.csv").write_text("x\ny\n")  # the catalogue changed: everything again
    run_pipeline(opts.model_copy(update={"until": "b"}), catalog, _stages(calls, knob))
    assert calls == ["a", "b"]


def test_until_names_a_stage() -> None:
    from metamodal.workflows.pipeline import _until

    with pytest.raises(ValueError, match="no stage 'zz'; the stages are a, b, na, c"):
        _until(_stages([], {}), "zz")


def test_the_quiet_console_keeps_our_lines_and_errors_and_drops_rays_chatter() -> None:
    from metamodal.raylogs import keep_line

    worker = {"actor_name": "RayTrainWorker", "pid": 11, "is_err": False}
    assert keep_line(worker, "lightgcn epoch    3/15  loss 0.69")
    assert not keep_line({**worker, "is_err": True}, "FutureWarning: all_gather is deprecated")
    assert not keep_line({"actor_name": "TrainController", "pid": 3, "is_err": True}, "Requesting resources: {'CPU': 1.0} * 2")
    assert not keep_line({"actor_name": "_WandbLoggingActor", "pid": 4, "is_err": False}, "wandb: Run summary:")
    assert not keep_line({"pid": "raylet", "is_err": False}, "A worker died or was killed while executing a task")
    # a worker's traceback reaches the driver as the run's exception, not as forwarded lines
    assert not keep_line({**worker, "is_err": True}, "ValueError: modality 'text' has no rows")
    assert keep_line({"pid": "raylet"}, "Task was killed due to the node running low on memory (out of memory)")
    assert not keep_line(worker, "DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully")


def test_the_quiet_driver_drops_deepspeeds_cpu_notice_and_keeps_its_other_warnings() -> None:
    import logging

    from metamodal.raylogs import AUTH_ENABLED, _DropNotice

    f = _DropNotice("Setting accelerator to CPU")
    rec = lambda msg: logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, msg, None, None)  # noqa: E731
    assert not f.filter(rec("Setting accelerator to CPU. If you have GPU or other accelerator, ..."))
    assert f.filter(rec("gradient overflow, skipping step"))
    auth = _DropNotice(AUTH_ENABLED)  # Ray's start-up notice goes; its warning that auth is off stays
    assert not auth.filter(rec("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=..."))
    assert auth.filter(rec("Token authentication is disabled. ..."))


def test_a_catalogue_exported_to_movielens_latest_loads_back_the_same(small_shop: Path, tmp_path: Path) -> None:
    from metamodal.data import load_dataset
    from metamodal.data.export import write_movielens_latest

    ds = load_dataset(small_shop)
    ml = load_dataset(write_movielens_latest(ds, tmp_path / "ml"))
    assert ml.format == "movielens_latest"
    assert (ml.n_users, ml.n_items, ml.n_interactions) == (ds.n_users, ds.n_items, ds.n_interactions)
    assert ml.modalities["text"].present.tolist() == ds.modalities["text"].present.tolist()
    assert ml.modalities["image"].present.tolist() == ds.modalities["image"].present.tolist()
    assert ml.report.lines() == []


def parse_page(text: str) -> dict:
    """What a browser would fetch and show: tags seen, image sources, external references."""
    from html.parser import HTMLParser

    seen: dict = {"tags": set(), "images": [], "external": []}

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            seen["tags"].add(tag)
            if tag == "img":
                seen["images"].append(a.get("src", ""))
            for key in ("src", "href"):
                if a.get(key) and not a[key].startswith(("data:", "#")):
                    seen["external"].append(a[key])

    P().feed(text)
    return seen


def test_the_html_report_is_one_self_contained_page(tmp_path: Path) -> None:
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metamodal.rundir.html import write_html

    (tmp_path / "report.md").write_text("# Run\n\n| model | R@20 |\n|---|---|\n| margo | 0.41 |\n\n- a <b>note</b>\n")
    plt.plot([1, 2], [3, 4])
    plt.savefig(tmp_path / "curve.png")
    plt.close()
    page = write_html(tmp_path / "report.md", config={"lr": 0.001, "path": "<x>"})
    assert page.name == "report.html"
    seen = parse_page(page.read_text())
    assert {"table", "th", "td", "img", "pre"} <= seen["tags"] and not seen["external"]
    assert len(seen["images"]) == 1 and seen["images"][0].startswith("data:image/png;base64,")
    assert base64.b64decode(seen["images"][0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "&lt;x&gt;" in page.read_text() and "0.41" in page.read_text()  # config escaped, table kept


def test_the_next_item_stage_reads_the_extracted_features_and_needs_timestamps(small_shop: Path, tmp_path: Path) -> None:
    """After the masked evaluation: the sequential baselines on the extract stage's features;
    left out of --quick and of a catalogue without timestamps, each said why."""
    from metamodal.data import load_dataset
    from metamodal.workflows.pipeline import Context
    from metamodal.workflows.stages import stages

    listed = {s.name: s for s in stages(serve=True)}
    assert list(listed)[-3:] == ["evaluate", "seq", "serve"]
    ctx = Context(PipelineOptions(out=tmp_path / "run"), small_shop, tmp_path / "run")
    ctx.done["extract"] = {"outputs": {"features": tmp_path / "emb"}}
    conf = listed["seq"].config(ctx)
    assert conf["features"] == str(tmp_path / "emb") and conf["seeds"] == 3
    assert conf["methods"] == ["popularity", "sasrec", "mm_sasrec"]
    assert ctx.ds.interactions.timestamp is not None and listed["seq"].skip_reason(ctx) is None
    quick = Context(PipelineOptions(out=tmp_path / "run", quick=True), small_shop, tmp_path / "run", ctx.done)
    assert f"--features {tmp_path / 'emb'} --out {tmp_path / 'run' / 'seq'} --quick" in listed["seq"].skip_reason(quick)
    ctx._ds = load_dataset(small_shop)
    ctx._ds.interactions.timestamp = None
    assert "no timestamps" in listed["seq"].skip_reason(ctx)
