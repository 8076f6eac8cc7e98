"""``metamodal pipeline CATALOG --out DIR``: every stage of the platform on one catalogue, in
order, each skipped when its record says it already ran with the same configuration on the
same inputs.

A stage's record (``DIR/stages/<name>.json``, written atomically once the stage finished) holds
a key over its configuration, the catalogue's files and the keys of the stages before it: a
changed catalogue or an earlier stage that ran again makes every later stage run again. A stage
interrupted half-way has no record; it runs again and resumes inside (extraction's shards,
Ray Train's checkpoints, MMA's finished seeds), so a rerun after a crash costs little.
``DIR/summary.json`` names every stage's outputs; the warnings a person must not miss (records
skipped, random weights, a target missed) are gathered from the stages' results and repeated at
the end."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metamodal.rundir.base import read_json, write_json
from metamodal.rundir.html import write_html
from metamodal.workflows.options import PipelineOptions

SUMMARY_VERSION = 1


@dataclass
class Context:
    """What the stages share: the options, the catalogue and the finished stages' records."""

    opts: PipelineOptions
    catalog: Path
    out: Path
    done: dict[str, dict] = field(default_factory=dict)
    _ds: Any = None

    @property
    def ds(self):
        """The catalogue, loaded once. Its format is autodetected, as every stage's loader does."""
        if self._ds is None:
            from metamodal.data import load_dataset

            self._ds = load_dataset(self.catalog)
        return self._ds

    def output(self, stage: str, name: str) -> Any:
        return self.done.get(stage, {}).get("outputs", {}).get(name)


@dataclass(frozen=True)
class Stage:
    """``run`` returns ``{"outputs": {name: path}, "result": {...}, "warnings": [...]}``;
    ``config`` is what decides its outputs; ``skip_reason`` says why it does not apply here;
    ``always``: a check (Serve answering requests) that runs every time, never kept."""

    name: str
    what: str
    config: Callable[[Context], dict]
    run: Callable[[Context], dict]
    skip_reason: Callable[[Context], str | None] = lambda ctx: None
    always: bool = False


def catalog_fingerprint(catalog: Path) -> str:
    """Every file's relative path, size and modification time: a changed catalogue runs the
    pipeline again, without reading gigabytes of images to notice."""
    h = hashlib.sha256()
    files = [catalog] if catalog.is_file() else sorted(p for p in catalog.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(catalog) if p != catalog else p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def stage_key(stage: str, config: dict, upstream: list[str], fingerprint: str) -> str:
    blob = json.dumps({"stage": stage, "config": config, "upstream": upstream,
                       "catalog": fingerprint}, sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _finished(record_file: Path, key: str) -> dict | None:
    """The record of a finished stage with this key whose outputs are all still there."""
    if not record_file.is_file():
        return None
    try:
        rec = read_json(record_file)
    except (OSError, ValueError):
        return None
    outputs = [Path(p) for p in rec.get("outputs", {}).values() if p]
    if rec.get("key") != key or not all(p.exists() for p in outputs):
        return None
    return rec


def run_pipeline(opts: PipelineOptions, catalog: Path, stages: list[Stage]) -> dict:
    """Run (or skip) ``stages`` in order up to ``opts.until``; write and return the summary."""
    out = opts.out.resolve()
    ctx = Context(opts, catalog.resolve(), out)
    fingerprint = catalog_fingerprint(ctx.catalog)
    todo = _until(stages, opts.until)
    t0, keys, entries = time.perf_counter(), [], {}
    for k, stage in enumerate(todo, 1):
        print(f"[{k}/{len(todo)}] {stage.name}: {stage.what}  (+{time.perf_counter() - t0:.0f} s)", flush=True)
        entries[stage.name] = _run_stage(stage, ctx, keys, fingerprint)
        keys.append(entries[stage.name].get("key", "not applicable"))
    summary = {"version": SUMMARY_VERSION, "catalog": str(ctx.catalog), "out": str(out),
               "options": json.loads(opts.model_dump_json()), "stages": entries,
               "warnings": [w for e in entries.values() for w in e.get("warnings", [])],
               "wall_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    write_json(out / "summary.json", summary, indent=2)
    (out / "summary.md").write_text(summary_markdown(summary))
    write_html(out / "summary.md", config=summary["options"], images=_stage_plots(entries))
    print("\n" + summary_markdown(summary), flush=True)
    return summary


def _stage_plots(entries: dict[str, dict]) -> list[Path]:
    """The stages' own plots, for the pipeline's page: the PNGs beside each stage's outputs."""
    found: dict[Path, None] = {}
    for e in entries.values():
        for p in e.get("outputs", {}).values():
            folder = Path(p) if Path(p).is_dir() else Path(p).parent
            found.update(dict.fromkeys(sorted(folder.glob("*.png"))))
    return list(found)


def _until(stages: list[Stage], until: str | None) -> list[Stage]:
    names = [s.name for s in stages]
    if until is None:
        return stages
    if until not in names:
        raise ValueError(f"--until: no stage {until!r}; the stages are {', '.join(names)}")
    return stages[: names.index(until) + 1]


def _run_stage(stage: Stage, ctx: Context, upstream: list[str], fingerprint: str) -> dict:
    reason = stage.skip_reason(ctx)
    if reason:
        print(f"  not applicable: {reason}", flush=True)
        return {"status": "not applicable", "reason": reason, "outputs": {}}
    config = stage.config(ctx)
    key = stage_key(stage.name, config, upstream, fingerprint)
    record_file = ctx.out / "stages" / f"{stage.name}.json"
    rec = None if stage.always else _finished(record_file, key)
    if rec is not None:
        print(f"  done before with the same configuration: kept ({record_file})", flush=True)
        ctx.done[stage.name] = rec
        return {**rec, "status": "kept"}
    t0 = time.perf_counter()
    got = stage.run(ctx)
    rec = {"key": key, "config": config, "outputs": {k: str(v) for k, v in got.get("outputs", {}).items()},
           "result": got.get("result", {}), "warnings": got.get("warnings", []),
           "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    write_json(record_file, rec, indent=2, default=str)
    ctx.done[stage.name] = rec
    print(f"  {stage.name} done in {rec['seconds']:.0f} s", flush=True)
    return {**rec, "status": "ran"}


def summary_markdown(summary: dict) -> str:
    """The stages (status, seconds, outputs), the headline results and the warnings."""
    lines = [f"# Pipeline on {summary['catalog']}", "", "| stage | status | seconds | outputs |",
             "|---|---|---|---|"]  # fmt: skip
    for name, e in summary["stages"].items():
        status = e["status"] + (f" ({e['reason']})" if e.get("reason") else "")
        outs = ", ".join(f"`{k}`: {v}" for k, v in e.get("outputs", {}).items())
        lines.append(f"| {name} | {status} | {e.get('seconds', '')} | {outs} |")
    headline = [(n, e["result"]["headline"]) for n, e in summary["stages"].items()
                if e.get("result", {}).get("headline")]  # fmt: skip
    if headline:
        lines += ["", "## Results", ""] + [f"- **{n}**: {h}" for n, h in headline]
    if summary["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    lines += ["", f"Wall time {summary['wall_seconds']:.0f} s; this summary: {summary['out']}/summary.json"]
    return "\n".join(lines) + "\n"
