"""``metamodal`` command line. Thin: each command parses arguments and calls the library."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from inspect import Parameter, signature
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from metamodal.config import ConfigError, Flag, flags_to_model, model_flags
from metamodal.data import DataError, load_dataset
from metamodal.data.missing import MissingSpec
from metamodal.data.synth import SynthConfig
from metamodal.extract.options import AlignConfig, ExtractOptions, KeywordOptions, SummariserConfig
from metamodal.serving.config import ServeConfig
from metamodal.storage import ENV_ENDPOINT, ENV_URI, Storage
from metamodal.workflows.options import (
    FORMAT_HELP,
    AlignIO,
    CatalogIO,
    MMARunOptions,
    MonitorOptions,
    PipelineRun,
    SeqRunOptions,
    TrainOptions,
    TuneOptions,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Generate, inspect and split datasets.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate recommenders (full ranking).")
storage_app = typer.Typer(no_args_is_help=True, help="Copy run directories to and from storage.")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
app.add_typer(storage_app, name="storage")


@app.callback()
def _settings(
    storage: Annotated[str | None, typer.Option(
        help="where run directories live for every node: a shared path, s3://bucket/prefix or a "
             "pyarrow URI (default: $METAMODAL_STORAGE; unset: the local disk only)")] = None,
    storage_endpoint: Annotated[str | None, typer.Option(
        help="an S3-compatible server's URL (default: $METAMODAL_STORAGE_ENDPOINT)")] = None,
) -> None:  # fmt: skip
    """Settings every command shares, passed on as the environment Ray's workers inherit."""
    for name, value in ((ENV_URI, storage), (ENV_ENDPOINT, storage_endpoint)):
        if value:
            os.environ[name] = value


@contextlib.contextmanager
def exit_2_on(*errors: type[BaseException]) -> Iterator[None]:
    """A person's mistake (a bad flag value, input the data layer refuses, a configuration a run
    directory refuses): one line naming it and exit status 2, no traceback."""
    try:
        yield
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None


def _storage_or_exit() -> Storage:
    storage = Storage.from_env()
    if storage is None:
        print("error: no storage set (--storage or METAMODAL_STORAGE)", file=sys.stderr)
        raise typer.Exit(2)
    return storage


@storage_app.command("pull")
def storage_pull(run_dir: Path) -> None:
    """Bring RUN_DIR from storage (files checked against its index)."""
    print(f"{run_dir}: {_storage_or_exit().pull(run_dir)} file(s) pulled")


@storage_app.command("push")
def storage_push(run_dir: Path) -> None:
    """Mirror RUN_DIR to storage (changed files only; what it no longer has goes)."""
    print(f"{run_dir}: {_storage_or_exit().push(run_dir)} file(s) pushed")

FormatOpt = Annotated[str | None, typer.Option("--format", "-f", help=FORMAT_HELP)]
MethodOpt = Annotated[
    str | None, typer.Option(help="mmrec|loo|time|given (default: the source's own, else mmrec)")
]


def with_model_options(model: type[BaseModel], into: str) -> Callable:
    """Give a command one option per field of ``model`` (type, default, choices, help from the
    field) and hand it the validated ``model`` as its ``into`` argument; a bad value exits 2
    naming the flag. The ``jobs/`` entrypoints get the same flags (``config.parse_flags``)."""

    def wrap(fn: Callable) -> Callable:
        sig = signature(fn)
        own = [_evaluated(p, fn.__globals__) for p in sig.parameters.values() if p.name != into]
        flags = model_flags(model)

        @functools.wraps(fn)
        def command(*args, **kwargs):
            values = {f.name: kwargs.pop(f.name) for f in flags}  # None: not given
            values = {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}
            try:
                opts = flags_to_model(model, values)
            except ConfigError as e:
                print(f"error: {e}", file=sys.stderr)
                raise typer.Exit(2) from None
            return fn(*args, **kwargs, **{into: opts})

        command.__signature__ = sig.replace(parameters=[*own, *map(_typer_param, flags)])
        command.__annotations__ = {p.name: p.annotation
                                   for p in command.__signature__.parameters.values()}  # fmt: skip
        return command

    return wrap


def _evaluated(p: Parameter, names: dict) -> Parameter:
    """``p`` with its annotation as an object: typer reads a given ``__signature__`` as it is,
    and this module's annotations are strings."""
    return p.replace(annotation=eval(p.annotation, names)) if isinstance(p.annotation, str) else p


def _typer_param(f: Flag) -> Parameter:
    kind = Enum(f.name, {c: c for c in f.choices}, type=str) if f.choices else f.kind
    kind = list[kind] if f.repeat else kind
    kind = kind if f.required or (f.default is not None and not f.repeat) or kind is bool else kind | None
    default = Parameter.empty if f.required else f.default
    info = typer.Argument(help=f.help) if f.positional else typer.Option(help=f.help)
    return Parameter(f.name, Parameter.KEYWORD_ONLY, default=default,
                     annotation=Annotated[kind, info])  # fmt: skip


@data_app.command("synth")
@with_model_options(SynthConfig, into="synth")
def synth(out: Annotated[Path, typer.Option(help="output directory")], synth: SynthConfig) -> None:
    """Write the embedded default catalog (a synthetic shop) in the generic format."""
    from metamodal.data.synth import generate

    generate(out, synth)


@data_app.command("inspect")
def inspect(
    path: Path,
    format: FormatOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable summary")] = False,
) -> None:
    """Users, items, interactions, density, split sizes and per-modality coverage."""
    from metamodal.data.inspect import describe

    ds = load_dataset(path, format)
    if as_json:
        print(json.dumps(ds.summary(), indent=2))
    else:
        print(describe(ds))


@data_app.command("split")
@with_model_options(MissingSpec, into="missing")
def split(
    path: Path,
    out: Annotated[Path, typer.Option(help="directory for split.* and missing.*")],
    missing: MissingSpec,
    format: FormatOpt = None,
    method: MethodOpt = None,
) -> None:
    """Split a dataset and draw its missingness masks (both saved, both seeded)."""
    from metamodal.data.missing import make_missingness
    from metamodal.data.splits import make_split

    ds = load_dataset(path, format)
    sp = make_split(ds, method, missing.seed)
    sp.save(out)
    miss = make_missingness(ds, sp, missing)
    miss.save(out)
    print(json.dumps({"split": sp.summary(), "missing": miss.summary()}, indent=2))


@eval_app.command("baselines")
@with_model_options(MissingSpec, into="missing")
def baselines(
    path: Path,
    out: Annotated[Path, typer.Option(help="results directory")],
    missing: MissingSpec,
    format: FormatOpt = None,
    method: MethodOpt = None,
) -> None:
    """Popularity and random baselines: results.json, results.md, results.png."""
    from metamodal.eval.tables import table
    from metamodal.workflows.reference import COLUMNS, run_baselines

    ds = load_dataset(path, format)
    res = run_baselines(ds, out, method=method, seed=missing.seed, missing=missing)
    print(table({k: v["test"] for k, v in res["models"].items()}, COLUMNS))
    print(f"wrote {out}/results.json, results.md, results.png")


@app.command("extract")
@with_model_options(CatalogIO, into="io")
@with_model_options(ExtractOptions, into="options")
def extract(io: CatalogIO, options: ExtractOptions) -> None:
    """Per-modality item embeddings through Ray Data (MiniLM text; EfficientNet-Lite or open_clip
    image)."""
    from metamodal.extract.encoders import WeightsUnavailable
    from metamodal.extract.pipeline import build_config, run_extraction

    with exit_2_on(ValueError, WeightsUnavailable):
        run_extraction(io.catalog, io.out, build_config(options), io.format)
    print(f"wrote {io.out}/manifest.json")


@app.command("keywords")
@with_model_options(CatalogIO, into="io")
@with_model_options(KeywordOptions, into="options")
def keywords(io: CatalogIO, options: KeywordOptions) -> None:
    """Keyword summaries per item through Ray Data: an LLM's keywords of the text, the image
    classifier's top classes as visual keywords; sharded and resumable like extraction."""
    from metamodal.extract.encoders import WeightsUnavailable
    from metamodal.extract.keyword_reward import keyword_quality
    from metamodal.extract.keywords import keyword_config, keyword_counts
    from metamodal.extract.pipeline import run_extraction
    from metamodal.rundir import write_json

    with exit_2_on(ValueError, WeightsUnavailable, FileNotFoundError):
        run_extraction(io.catalog, io.out, keyword_config(options), io.format)
    counts = keyword_counts(io.out)
    print(", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()))
    q = keyword_quality(io.out, io.catalog, io.format)
    write_json(io.out / "keyword_quality.json", {**counts, "quality": q}, indent=1)
    print("summariser reward terms: " + ", ".join(f"{k} {v:.3f}" for k, v in q.items() if k != "items"))
    print(f"wrote {io.out}/manifest.json, keyword_quality.json")


@app.command("tune-summariser")
@with_model_options(CatalogIO, into="io")
@with_model_options(SummariserConfig, into="cfg")
def tune_summariser_cmd(io: CatalogIO, cfg: SummariserConfig) -> None:
    """Reward-tune the keyword summariser with GRPO on Ray Train (information kept +
    reconstructability − length); OUT/summariser is a checkpoint `keywords --llm` reads."""
    from metamodal.extract.summariser import tune_summariser

    with exit_2_on(ValueError, FileNotFoundError):
        res = tune_summariser(str(io.catalog), io.out, cfg, io.format)
    for k in ("before", "after"):
        print(f"{k}: " + ", ".join(f"{m} {v:.3f}" for m, v in res[k].items()))
    print(f"wrote {io.out}/summariser, {io.out}/report.json")


@app.command()
@with_model_options(AlignIO, into="io")
@with_model_options(AlignConfig, into="cfg")
def align(io: AlignIO, cfg: AlignConfig) -> None:
    """Image-text alignment on Ray Train: an open_clip model on the catalog's pairs (--mode clip),
    or projection heads over frozen extracted features (--mode heads --features DIR)."""
    if cfg.mode == "heads":
        from metamodal.extract.align_heads import run_align_heads

        with exit_2_on(ValueError):
            run_align_heads(io.catalog, io.features, io.out, cfg, io.format, split=io.split, overwrite=io.overwrite)
        return
    from metamodal.extract.align import run_align

    if io.features is not None:
        print("error: --features is read by --mode heads only (clip mode trains on the raw pairs)", file=sys.stderr)
        raise typer.Exit(2)
    run_align(io.catalog, io.out, cfg, io.format, split=io.split, overwrite=io.overwrite)


@app.command()
@with_model_options(TrainOptions, into="o")
def train(o: TrainOptions) -> None:
    """Train a zoo model on Ray Train; writes results.json, metrics.jsonl, curves.png."""
    from metamodal.train.runner import TrainingDiverged, run_training

    try:
        run_training(o.model, o.dataset, o.out, o.set, o.config, o.overwrite)
    except (ConfigError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2 if isinstance(e, ConfigError) else 1) from None


@app.command()
@with_model_options(TuneOptions, into="o")
def tune(o: TuneOptions) -> None:
    """Ray Tune + ASHA over a fusion model's hyperparameters, selected on valid Recall@20."""
    from metamodal.tuning import run_tune

    with exit_2_on(ValueError):
        run_tune(o.space, o.dataset, o.out, o.set, o.samples, o.max_epochs, o.concurrent, o.wandb)


@app.command()
@with_model_options(ServeConfig, into="cfg")
def serve(
    cfg: ServeConfig,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run the recommender app in this process until interrupted (Ctrl-C)."""
    import time

    from ray import serve as rserve

    from metamodal.serving.deployments import build_app

    rserve.start(http_options={"host": host, "port": port})
    rserve.run(build_app(cfg), name="recommender", route_prefix="/")
    print(f"serving on http://{host}:{port}  (POST /recommend, GET /healthz, GET /items/ID)")
    while True:
        time.sleep(3600)


mma_app = typer.Typer(no_args_is_help=True, help="MMA, the Meta-Modal Agent.")
app.add_typer(mma_app, name="mma")


@mma_app.command("run")
@with_model_options(MMARunOptions, into="o")
def mma_run(o: MMARunOptions) -> None:
    """Train (or reuse) the zoo, train MMA per seed, and write the four evidence checks. Run
    again with the same configuration, it resumes at the first unfinished seed."""
    from pydantic import ValidationError

    from metamodal.agent.config import load_mma_config
    from metamodal.agent.run import run_mma

    try:
        cfg = load_mma_config(o.overrides(), o.quick, o.seeds)
    except (ValidationError, ConfigError) as e:
        print(f"error: mma configuration: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    with exit_2_on(ConfigError):
        run_mma(str(o.dataset), o.out, cfg, reevaluate=o.reevaluate)


seq_app = typer.Typer(no_args_is_help=True, help="Sequential (next-item) recommendation.")
app.add_typer(seq_app, name="seq")


@seq_app.command("run")
@with_model_options(SeqRunOptions, into="o")
def seq_run(o: SeqRunOptions) -> None:
    """Popularity, SASRec, multimodal SASRec and (with --keywords) the keyword-RAG LLM on a
    leave-last-out split by time, both protocols (sampled and full ranking), with text or image
    missing. Run again, each seed's methods whose inputs did not change are kept."""
    from pydantic import ValidationError

    from metamodal.seq.config import load_seq_config
    from metamodal.seq.run import run_seq

    try:
        cfg = load_seq_config(o.overrides(), o.quick, o.seeds)
    except (ValidationError, ConfigError) as e:
        print(f"error: seq configuration: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    with exit_2_on(ConfigError, ValueError):
        run_seq(str(o.dataset), o.out, cfg)
    print(f"wrote {o.out}/report.md")


@app.command()
@with_model_options(PipelineRun, into="o")
def pipeline(o: PipelineRun) -> None:
    """Every stage on one catalogue: inspect, split + missingness, align, extract, zoo, a Tune
    sweep, MMA, masked evaluation [, Serve]. Run again, finished stages with the same
    configuration are kept; OUT/summary.json names every stage's outputs."""
    from metamodal.workflows.stages import run_catalog

    with exit_2_on(ConfigError, ValueError):
        summary = run_catalog(o, o.catalog)
    print(f"wrote {summary['out']}/summary.json")


@app.command()
@with_model_options(MonitorOptions, into="o")
def monitor(o: MonitorOptions) -> None:
    """Coverage, embedding drift and neighbour stability per modality between two extraction
    runs (or a run and a new catalogue), and a zoo run's calibration per modality pattern."""
    from metamodal.monitor import DriftConfig, run_monitor

    with exit_2_on(FileNotFoundError, ValueError):
        res = run_monitor(o.reference, o.current, o.out, o.zoo, o.format, DriftConfig(max_rows=o.max_rows))
    print(f"wrote {o.out}/monitor.json ({len(res['flags'])} flag(s))")


def main() -> None:
    try:
        app()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
