"""The demo path on the embedded default catalog. Today: generate → inspect → split with
missingness → evaluate the reference baselines → CLIP alignment on Ray Train → Ray Data
extraction with MiniLM and the aligned image tower. Later stages (train, tune, MMA, serve) join
here as they land."""

from __future__ import annotations

import time
from pathlib import Path

from metamodal.data import load_dataset
from metamodal.data.inspect import describe
from metamodal.data.missing import MissingSpec
from metamodal.data.splits import Split
from metamodal.data.synth import SynthConfig, generate
from metamodal.eval.report import table
from metamodal.workflows.baselines import COLUMNS, run_baselines

DEMO_MISSING = MissingSpec(
    item_rates={"text": 0.3, "image": 0.3}, cold_user_frac=0.1, cold_item_frac=0.1
)


def run_demo(out: str | Path, synth: SynthConfig | None = None) -> dict:
    synth = synth or SynthConfig()
    out = Path(out)
    t0 = time.perf_counter()
    catalog = out / "catalog"
    steps = 6

    def step(k: int, what: str) -> None:
        print(f"[{k}/{steps}] {what}  (+{time.perf_counter() - t0:.1f} s)", flush=True)

    step(1, f"generating the synthetic shop -> {catalog}")
    if (catalog / "catalog.json").is_file() and (catalog / "planted" / "users.csv").is_file():
        print("  reusing the catalog already there (delete it to regenerate)")
    else:
        generate(catalog, synth)
    step(2, "inspecting it")
    ds = load_dataset(catalog)
    print(describe(ds))
    step(
        3,
        "splitting (MMRec 8:1:1) with missingness: text/image 30% per item, 10% cold users, 10% cold items",
    )
    step(4, "evaluating baselines (full ranking over the whole catalogue)")
    res = run_baselines(ds, out / "baselines", missing=DEMO_MISSING, seed=synth.seed)
    print()
    print(table({k: v["test"] for k, v in res["models"].items()}, COLUMNS))
    step(5, "aligning a small CLIP on the shop's image-text pairs (Ray Train, 2 workers)")
    from metamodal.extract.align import AlignConfig, run_align
    from metamodal.extract.pipeline import build_config, run_extraction

    train_idx = Split.load(out / "baselines" / "split", ds).train
    align = run_align(
        catalog,
        out / "align",
        AlignConfig(co_weight=0.5, seed=synth.seed),
        interactions_idx=train_idx,
    )
    step(6, "extracting item embeddings with Ray Data (MiniLM text, aligned image tower)")
    manifest = run_extraction(
        catalog, out / "embeddings", build_config(image_weights=align["checkpoint"])
    )
    res["align"] = {k: align[k] for k in ("test_before", "test_after", "best_epoch")}
    res["extract"] = {
        k: {"present": v["present"], "missing": v["missing"]}
        for k, v in manifest["modalities"].items()
    }
    wall = time.perf_counter() - t0
    print(
        f"\nreport: {out / 'baselines' / 'results.md'}\nplot:   {out / 'baselines' / 'results.png'}"
        f"\nalign:  {out / 'align' / 'align_report.json'} (image->text R@10 "
        f"{align['test_before']['i2t_recall@10']:.3f} -> {align['test_after']['i2t_recall@10']:.3f}), "
        f"{out / 'align' / 'align_curve.png'}\nembeddings: {out / 'embeddings' / 'manifest.json'}"
    )
    print(f"demo wall time: {wall:.1f} s")
    return {**res, "wall_seconds": wall}
