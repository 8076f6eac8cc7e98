"""``metamodal`` command line. Thin: each command parses arguments and calls the library."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import Enum
from inspect import Parameter, signature
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from metamodal.config import flag_type
from metamodal.data import DataError, load_dataset
from metamodal.extract.options import AlignConfig, ExtractOptions

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Generate, inspect and split datasets.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate recommenders (full ranking).")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="generic|movielens|lattice|mmrec (default: autodetect)"),
]


def parse_rates(values: list[str]) -> dict[str, float]:
    """``["text=0.3", "image=0.6"]`` -> ``{"text": 0.3, "image": 0.6}``."""
    out = {}
    for v in values:
        name, sep, rate = v.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected MODALITY=RATE, got {v!r}")
        try:
            out[name] = float(rate)
        except ValueError:
            raise typer.BadParameter(f"rate in {v!r} is not a number") from None
    return out


def with_model_options(model: type[BaseModel]) -> Callable:
    """Give a command one option per field of ``model`` (type, default, choices, help from the
    field), passed to it as keyword arguments: an option is declared once, in the model, for
    this CLI and the ``jobs/`` entrypoints alike (``metamodal.config.add_model_flags``)."""

    def wrap(fn: Callable) -> Callable:
        sig = signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        extra = []
        for name, f in model.model_fields.items():
            kind, choices = flag_type(f.annotation)
            kind = Enum(name, {c: c for c in choices}, type=str) if choices else kind
            opt = typer.Option(help=f.description)
            extra.append(Parameter(name, Parameter.KEYWORD_ONLY, default=f.default,
                                           annotation=Annotated[kind if f.default is not None or kind is bool else kind | None, opt]))  # fmt: skip

        @functools.wraps(fn)
        def command(*args, **kwargs):
            return fn(*args, **{k: v.value if isinstance(v, Enum) else v for k, v in kwargs.items()})

        command.__signature__ = sig.replace(parameters=[*own, *extra])
        return command

    return wrap


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option(help="output directory")],
    items: int = 3000,
    users: int = 2000,
    seed: int = 0,
    image_size: int = 64,
) -> None:
    """Write the embedded default catalog (a synthetic shop) in the generic format."""
    from metamodal.data.synth import SynthConfig, generate

    generate(out, SynthConfig(n_items=items, n_users=users, seed=seed, image_size=image_size))


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
def split(
    path: Path,
    out: Annotated[Path, typer.Option(help="directory for split.* and missing.*")],
    format: FormatOpt = None,
    method: Annotated[
        str | None,
        typer.Option(help="mmrec|loo|time|given (default: the source's own, else mmrec)"),
    ] = None,
    seed: int = 0,
    missing: Annotated[
        list[str], typer.Option(help="item-level missing rate, MODALITY=RATE (repeatable)")
    ] = [],  # noqa: B006
    cold_users: float = 0.0,
    cold_items: float = 0.0,
) -> None:
    """Split a dataset and draw its missingness masks (both saved, both seeded)."""
    from metamodal.data.missing import MissingSpec, make_missingness
    from metamodal.data.splits import make_split

    spec = MissingSpec(item_rates=parse_rates(missing), cold_user_frac=cold_users, cold_item_frac=cold_items, seed=seed)
    ds = load_dataset(path, format)
    sp = make_split(ds, method, seed)
    sp.save(out)
    miss = make_missingness(ds, sp, spec)
    miss.save(out)
    print(json.dumps({"split": sp.summary(), "missing": miss.summary()}, indent=2))


@eval_app.command("baselines")
def baselines(
    path: Path,
    out: Annotated[Path, typer.Option(help="results directory")],
    format: FormatOpt = None,
    method: str | None = None,
    seed: int = 0,
    missing: Annotated[list[str], typer.Option(help="MODALITY=RATE (repeatable)")] = [],  # noqa: B006
    cold_users: float = 0.0,
    cold_items: float = 0.0,
) -> None:
    """Popularity and random baselines: results.json, results.md, results.png."""
    from metamodal.data.missing import MissingSpec
    from metamodal.eval.tables import table
    from metamodal.workflows.reference import COLUMNS, run_baselines

    spec = MissingSpec(item_rates=parse_rates(missing), cold_user_frac=cold_users, cold_item_frac=cold_items, seed=seed)
    ds = load_dataset(path, format)
    res = run_baselines(ds, out, method=method, seed=seed, missing=spec)
    print(table({k: v["test"] for k, v in res["models"].items()}, COLUMNS))
    print(f"wrote {out}/results.json, results.md, results.png")


@app.command("extract")
@with_model_options(ExtractOptions)
def extract(
    catalog: Path,
    out: Annotated[Path, typer.Option(help="output directory (shards + manifest.json)")],
    format: FormatOpt = None,
    **options,
) -> None:
    """Per-modality item embeddings through Ray Data (MiniLM text; EfficientNet-Lite or open_clip
    image)."""
    from metamodal.extract.encoders import WeightsUnavailable
    from metamodal.extract.pipeline import build_config, run_extraction

    try:
        cfg = build_config(**options)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        run_extraction(catalog, out, cfg, format)
    except WeightsUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"wrote {out}/manifest.json")


@app.command()
@with_model_options(AlignConfig)
def align(
    catalog: Path,
    out: Annotated[Path, typer.Option(help="output directory (aligned.pt, align_report.json)")],
    format: FormatOpt = None,
    split: Annotated[
        Path | None,
        typer.Option(help="a saved split: co-interactions come from its train part only"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a run made with another config")] = False,
    **options,
) -> None:
    """CLIP domain alignment of an open_clip model on the catalog's image-text pairs (Ray Train)."""
    from metamodal.extract.align import run_align

    cfg = AlignConfig(**options)
    idx = None
    if split is not None:
        from metamodal.data.splits import Split

        idx = Split.load(split, load_dataset(catalog, format)).train
    run_align(catalog, out, cfg, format, interactions_idx=idx, overwrite=overwrite)


@app.command()
def train(
    model: Annotated[str, typer.Option(help="zoo model name (metamodal.models.ZOO)")],
    dataset: Annotated[Path, typer.Option(help="dataset directory")],
    out: Annotated[Path, typer.Option(help="run directory")],
    set: Annotated[
        list[str] | None, typer.Option("--set", help="override key.path=value (repeatable)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="override YAML file")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a run made with another config")] = False,
) -> None:
    """Train a zoo model on Ray Train; writes results.json, metrics.jsonl, curves.png."""
    from metamodal.config import ConfigError
    from metamodal.train.runner import run_training

    try:
        run_training(model, dataset, out, set or [], config, overwrite)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None


@app.command()
def tune(
    space: Annotated[Path, typer.Option(help="search space YAML (tune_spaces/*.yaml)")],
    dataset: Annotated[Path, typer.Option(help="dataset directory")],
    out: Annotated[Path, typer.Option(help="sweep directory (trials.md, best.yaml, plots)")],
    samples: Annotated[int | None, typer.Option(help="trials (default: the space's)")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="epochs per trial at most")] = None,
    concurrent: Annotated[int | None, typer.Option(help="trials at once")] = None,
    set: Annotated[
        list[str] | None, typer.Option("--set", help="fixed override key.path=value")
    ] = None,
    wandb: Annotated[bool, typer.Option(help="log to wandb (offline unless WANDB_MODE)")] = True,
) -> None:
    """Ray Tune + ASHA over a fusion model's hyperparameters, selected on valid Recall@20."""
    from metamodal.tuning import run_tune

    try:
        run_tune(space, dataset, out, set or [], samples, max_epochs, concurrent, wandb)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None


@app.command()
def serve(
    mma_dir: Annotated[Path | None, typer.Option(help="a `metamodal mma run` output")] = None,
    retriever_run: Annotated[Path | None, typer.Option(help="a zoo run (without mma_dir)")] = None,
    reranker: Annotated[str, typer.Option(help="mma | rulerouter | model | none")] = "mma",
    model_run: Annotated[
        Path | None, typer.Option(help="fusion model run (reranker=model)")
    ] = None,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run the recommender app in this process until interrupted (Ctrl-C)."""
    import time

    from ray import serve as rserve

    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import build_app

    kw = {"reranker": reranker, "model_run": str(model_run) if model_run else None}
    cfg = (ServeConfig.from_mma_dir(mma_dir, **kw) if mma_dir
           else ServeConfig(retriever_run=str(retriever_run), **kw))  # fmt: skip
    rserve.start(http_options={"host": host, "port": port})
    rserve.run(build_app(cfg), name="recommender", route_prefix="/")
    print(f"serving on http://{host}:{port}  (POST /recommend, GET /healthz, GET /items/ID)")
    while True:
        time.sleep(3600)


mma_app = typer.Typer(no_args_is_help=True, help="MMA, the Meta-Modal Agent.")
app.add_typer(mma_app, name="mma")


@mma_app.command("run")
def mma_run(
    dataset: Annotated[Path, typer.Option(help="dataset directory")],
    out: Annotated[Path, typer.Option(help="run directory (report.json, report.md, plots)")],
    quick: Annotated[bool, typer.Option(help="the demo's budget: short runs, few steps")] = False,
    seeds: Annotated[int | None, typer.Option(help="policy seeds (default 3)")] = None,
    split: Annotated[
        str | None,
        typer.Option(help="mmrec (per-user random 8:1:1) or time (per-user chronological)"),
    ] = None,
    set: Annotated[
        list[str] | None,
        typer.Option("--set", help="override key.path=value, e.g. policy.rl_epochs=3"),
    ] = None,
    reevaluate: Annotated[
        bool,
        typer.Option(help="keep OUT's trained policies (same configuration), evaluate again"),
    ] = False,
) -> None:
    """Train (or reuse) the zoo, train MMA per seed, and write the four evidence checks. Run
    again with the same configuration, it resumes at the first unfinished seed."""
    from pydantic import ValidationError

    from metamodal.agent.config import load_mma_config
    from metamodal.agent.run import run_mma
    from metamodal.config import ConfigError

    try:
        extra = [f"split={'user_time' if split == 'time' else split}"] if split else []
        cfg = load_mma_config([*(set or []), *extra], quick, seeds)
    except (ValidationError, ConfigError) as e:
        print(f"error: mma configuration: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        run_mma(str(dataset), out, cfg, reevaluate=reevaluate)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None


def main() -> None:
    try:
        app()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
