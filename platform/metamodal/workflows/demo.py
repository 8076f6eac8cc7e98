"""The demo path on the embedded default catalog: generate → inspect → split with missingness →
reference baselines → CLIP alignment on Ray Train → Ray Data extraction (MiniLM, the aligned
image tower) → the retriever and fusion models on Ray Train → a short Ray Tune sweep → MMA
(the LLM menu router: warm start + expected-reward RL on Ray Train, ``--quick``, one
seed) → evaluation with content masked at serving time →
the Serve app answering a few requests over HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

from metamodal.data import load_dataset
from metamodal.data.inspect import describe
from metamodal.data.missing import MissingSpec
from metamodal.data.synth import SynthConfig, generate
from metamodal.eval.tables import table
from metamodal.storage import sync_up
from metamodal.workflows.reference import COLUMNS, run_baselines

DEMO_MISSING = MissingSpec(
    item_rates={"text": 0.3, "image": 0.3}, cold_user_frac=0.1, cold_item_frac=0.1
)


class _Steps:
    """``[k/11] what  (+seconds)``: the demo's progress lines."""

    def __init__(self, total: int) -> None:
        self.total, self.t0 = total, time.perf_counter()

    def __call__(self, k: int, what: str) -> None:
        print(f"[{k}/{self.total}] {what}  (+{self.elapsed():.1f} s)", flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def run_demo(out: str | Path, synth: SynthConfig | None = None, stop_after: int = 11) -> dict:
    """The steps in order; ``stop_after=6`` ends after extraction (the test suite's budget)."""
    synth = synth or SynthConfig()
    out = Path(out)
    step = _Steps(11)
    res, align = _data_steps(out, synth, step)
    if stop_after <= 6:
        print(f"demo wall time: {step.elapsed():.1f} s (stopped after step 6)")
        return {**res, "wall_seconds": step.elapsed()}
    mma_dir = _model_steps(out, res, step)
    print("\n" + (mma_dir / "report.md").read_text())
    print(
        f"MMA report: {mma_dir / 'report.md'} (+ report.json, ooma.png, fixed_pool.png)"
        f"\nTune: {out / 'tune' / 'trials.md'}, best {out / 'tune' / 'best.yaml'}, {out / 'tune' / 'curves.png'}"
        f"\nmasked evaluation: {out / 'evaluation' / 'evaluation.md'}, evaluation.png"
        f"\nbaselines: {out / 'baselines' / 'results.md'}\nplot:   {out / 'baselines' / 'results.png'}"
        f"\nalign:  {out / 'align' / 'align_report.json'} (image->text R@10 "
        f"{align.test_before['i2t_recall@10']:.3f} -> {align.test_after['i2t_recall@10']:.3f}), "
        f"{out / 'align' / 'align_curve.png'}\nembeddings: {out / 'embeddings' / 'manifest.json'}"
    )
    print(f"demo wall time: {step.elapsed():.1f} s")
    sync_up(out)  # the catalogue, evaluation and tables (each stage's run pushed itself)
    return {**res, "wall_seconds": step.elapsed()}


def _data_steps(out: Path, synth: SynthConfig, step: _Steps) -> tuple[dict, dict]:
    """Steps 1-6: the shop, its inspection, split + masks, baselines, CLIP alignment and
    extraction. Returns (the demo's results so far, the alignment report)."""
    from metamodal.extract.align import AlignConfig, run_align
    from metamodal.extract.pipeline import ExtractOptions, build_config, run_extraction

    catalog = out / "catalog"
    step(1, f"generating the synthetic shop -> {catalog}")
    if (catalog / "catalog.json").is_file() and (catalog / "planted" / "users.csv").is_file():
        print("  reusing the catalog already there (delete it to regenerate)")
    else:
        generate(catalog, synth)
    step(2, "inspecting it")
    ds = load_dataset(catalog)
    print(describe(ds))
    step(3, "splitting (MMRec 8:1:1) with missingness: text/image 30% per item, 10% cold users, "
         "10% cold items")  # fmt: skip
    step(4, "evaluating baselines (full ranking over the whole catalogue)")
    res = run_baselines(ds, out / "baselines", missing=DEMO_MISSING, seed=synth.seed)
    print()
    print(table({k: v["test"] for k, v in res["models"].items()}, COLUMNS))
    step(5, "aligning a small CLIP on the shop's image-text pairs (Ray Train, 2 workers)")
    align = run_align(catalog, out / "align",
                      AlignConfig(co_weight=0.5, seed=synth.seed, epochs=6),  # 12 by default: the demo's budget
                      split=out / "baselines" / "split")  # fmt: skip
    step(6, "extracting item embeddings with Ray Data (MiniLM text, aligned image tower)")
    manifest = run_extraction(catalog, out / "embeddings", build_config(ExtractOptions(image_weights=align.checkpoint)))
    res["align"] = align.model_dump(include={"test_before", "test_after", "best_epoch"})
    res["extract"] = {k: {"present": v.present, "missing": v.missing}
                      for k, v in manifest.modalities.items()}  # fmt: skip
    return res, align


def _model_steps(out: Path, res: dict, step: _Steps) -> Path:
    """Steps 7-11: the zoo, a Tune sweep, MMA, masked evaluation and Serve; adds to ``res``
    and returns the MMA run's directory."""
    from metamodal.agent.config import load_mma_config
    from metamodal.agent.run import run_mma, train_zoo
    from metamodal.workflows.runs import evaluate_runs

    catalog, mma_dir = out / "catalog", out / "mma"
    mcfg = load_mma_config(  # the quick preset, one warm-start epoch less: the demo's budget
        [f"zoo_overrides=[data.features={out / 'embeddings'}]", "policy.bc_epochs=3"], True, 1
    )
    step(7, f"training the retriever and fusion models on Ray Train ({mcfg.retriever}, "
         + ", ".join(mcfg.baselines) + ")")  # fmt: skip
    zoo = train_zoo(str(catalog), mma_dir, mcfg)
    step(8, "a short Ray Tune sweep (ASHA) over late fusion's learning rate and layers")
    res["tune"] = demo_tune(catalog, out)
    step(9, "MMA: the LLM menu router (warm start + RL on Ray Train; quick preset, 1 seed) "
         "against RuleRouter-Fuse, the learned gate and the zoo")
    rep = run_mma(str(catalog), mma_dir, mcfg)
    step(10, "evaluating the zoo runs with content masked at serving time")
    evaluate_runs([r.out for r in zoo.values()], out / "evaluation")
    step(11, "serving retriever + MMA reranker with Ray Serve; a few requests on 127.0.0.1")
    res["serve"] = demo_serve(mma_dir, catalog)
    res["mma"] = {k: rep[k] for k in ("ooma", "fixed_pool", "strongest_baseline")}
    return mma_dir


def demo_tune(catalog: Path, out: Path) -> dict:
    from metamodal.tuning import run_tune

    space = out / "tune_space.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(
        "model: late_fusion\nnum_samples: 4\nmax_epochs: 4\ngrace_period: 1\n"
        "reduction_factor: 2\nspace:\n  train.lr: {loguniform: [0.0005, 0.01]}\n"
        "  params.n_layers: {choice: [1, 2]}\n"
    )
    return run_tune(space, catalog, out / "tune", [f"data.features={out / 'embeddings'}"])


def demo_serve(mma_dir: Path, catalog: Path) -> list[dict]:
    """Deploy the app, ask for a known user, a history and a free text, and shut it down."""
    import json
    import socket
    import urllib.request

    from ray import serve

    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import build_app

    cfg = ServeConfig(mma_dir=str(mma_dir))
    ds = load_dataset(catalog)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(cfg), name="demo", route_prefix="/")
    asks = [
        {"user_id": str(ds.user_ids[0]), "k": 5},
        {"history": [str(x) for x in ds.item_ids[:3]], "k": 5, "modalities": ["text", "image"]},
        {"text": "a woollen rug, minimalist and warm", "k": 5},
    ]
    answers = []
    try:
        for body in asks:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/recommend",
                data=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=120) as r:
                got = json.loads(r.read())
            answers.append(got)
            q = {k: v for k, v in body.items() if k != "k"}
            print(f"  POST /recommend {json.dumps(q)[:70]} -> "
                  f"{[x['item_id'] for x in got['items']]} (reranker {got['reranker']}, tools "
                  f"{got['tools']}, {got['timings_ms']['total']:.0f} ms)")  # fmt: skip
    finally:
        serve.delete("demo")
        serve.shutdown()
    return answers
