"""Zero-shot image→text Recall@10 on held-out pairs: the guide's "separate encoders + alignment"
(``metamodal align --mode heads``: frozen MiniLM text and ImageNet EfficientNet-Lite0 image
features, trained projection heads) against the from-scratch tiny CLIP (``--mode clip``), on
ml100k-mm's posters and plots and on the generated catalogue.

Both modes split the items that have both modalities with the same seed, so where extraction
decoded exactly the images the raw loader did (both catalogues here: the skip counts match) the
held-out pairs are the same items; the rows give their number and the chance level (10 / test
pairs). Every number is the epoch
chosen on validation pairs, reported on test; "before" is the same architecture untrained. The
heads train with and without the co-interaction term; the weight is chosen on validation.

    python benchmarks/align_recall.py --work /tmp/align_recall
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def catalogues(work: Path, data: Path) -> dict[str, Path]:
    from metamodal.data.synth import SynthConfig, generate

    shop = work / "shop"
    if not (shop / "catalog.json").is_file():
        generate(shop, SynthConfig(), progress=False)
    return {"ml100k-mm": data / "ml100k-mm", "generated shop (3k items)": shop}


CO_WEIGHTS = (0.0, 0.5)  # the heads' co-interaction weight: chosen on validation pairs


def heads_dir(co_weight: float) -> str:
    """A heads run's folder in a catalogue's work folder (``cold_image_queries.py`` reads it)."""
    return "heads" if co_weight == 0 else f"heads_co{co_weight}"


def run_case(name: str, catalog: Path, work: Path, heads_overrides: dict) -> dict:
    from metamodal.extract.align import run_align
    from metamodal.extract.align_heads import run_align_heads
    from metamodal.extract.options import AlignConfig
    from metamodal.extract.pipeline import ExtractConfig, run_extraction

    print(f"== {name}: extraction with the defaults (MiniLM, EfficientNet-Lite0)", flush=True)
    manifest = run_extraction(catalog, work / "emb", ExtractConfig())
    heads = {w: run_align_heads(catalog, work / "emb", work / heads_dir(w),
                                AlignConfig(mode="heads", co_weight=w, **heads_overrides))
             for w in CO_WEIGHTS}  # fmt: skip
    chosen = max(CO_WEIGHTS, key=lambda w: max(e["valid_i2t_recall@10"] for e in heads[w].epochs))
    clip = run_align(catalog, work / "clip", AlignConfig(mode="clip"))
    row = {"catalogue": name, "random_init_features": manifest.random_init, "heads_co_weight_chosen": chosen}
    for mode, rep in [("clip", clip)] + [(f"heads co_weight={w}", heads[w]) for w in CO_WEIGHTS]:
        row[mode] = {"valid_best": max(e["valid_i2t_recall@10"] for e in rep.epochs),"test_pairs": rep.pairs["test"], "train_pairs": rep.pairs["train"],
                     "chance": min(1.0, 10 / rep.pairs["test"]), "arch": rep.arch,
                     "before": rep.test_before["i2t_recall@10"], "after": rep.test_after["i2t_recall@10"],
                     "t2i_after": rep.test_after["t2i_recall@10"], "best_epoch": rep.best_epoch,
                     "seconds": rep.seconds}  # fmt: skip
    return row


def markdown(rows: list[dict]) -> str:
    from metamodal.eval.tables import markdown_table

    header = ["catalogue", "mode", "architecture", "test pairs", "chance", "valid i2t R@10 (best epoch)",
              "test i2t R@10 before", "test i2t R@10 after", "test t2i R@10 after", "best epoch", "seconds"]  # fmt: skip
    body = []
    for r in rows:
        for mode in ["clip"] + [f"heads co_weight={w}" for w in CO_WEIGHTS]:
            m = r[mode]
            pick = " (chosen)" if mode == f"heads co_weight={r['heads_co_weight_chosen']}" else ""
            body.append([r["catalogue"], mode + pick, m["arch"], str(m["test_pairs"]), f"{m['chance']:.3f}",
                         f"{m['valid_best']:.3f}", f"{m['before']:.3f}", f"{m['after']:.3f}",
                         f"{m['t2i_after']:.3f}", str(m["best_epoch"]), f"{m['seconds']:.0f}"])  # fmt: skip
    return markdown_table(header, body) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/align_recall"))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "align_recall_cpu")
    ap.add_argument("--heads-epochs", type=int, default=30)
    ap.add_argument("--heads-lr", type=float, default=1e-3)
    a = ap.parse_args()
    overrides = {"epochs": a.heads_epochs, "lr": a.heads_lr}
    rows = [run_case(name, cat, a.work / name.split()[0], overrides) for name, cat in catalogues(a.work, a.data).items()]
    a.out.with_suffix(".json").write_text(json.dumps({"heads_overrides": overrides, "rows": rows}, indent=2))
    a.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
