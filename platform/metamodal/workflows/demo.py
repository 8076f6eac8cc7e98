"""``make demo``: the pipeline (``metamodal.workflows.stages``) on the synthetic shop, generated
into ``OUT/catalog`` first unless a catalogue is given."""

from __future__ import annotations

from pathlib import Path

from metamodal.data.synth import SynthConfig, generate
from metamodal.workflows.options import PipelineJob


def shop(catalog: Path, synth: SynthConfig) -> Path:
    """The synthetic shop, generated once: a rerun keeps it (and so every finished stage)."""
    if (catalog / "catalog.json").is_file() and (catalog / "planted" / "users.csv").is_file():
        print(f"the shop already in {catalog} is kept (delete it to generate again)", flush=True)
    else:
        print(f"generating the synthetic shop -> {catalog}", flush=True)
        generate(catalog, synth)
    return catalog


def run_demo(opts: PipelineJob, synth: SynthConfig | None = None) -> dict:
    from metamodal.workflows.stages import run_catalog

    catalog = opts.catalog or shop(opts.out / "catalog", synth or SynthConfig())
    return run_catalog(opts, catalog)
