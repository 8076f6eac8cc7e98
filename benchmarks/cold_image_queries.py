"""What a cold-start image query finds, with and without the alignment heads: for each held-out
pair of an ``align_recall.py`` heads run (the heads never trained on it), the item's own image
features are the query and its 10 nearest other items are compared —

- ``image->image``: cosine over the image features (Serve without heads),
- ``shared (heads)``: ``SharedSpace.item_scores`` (Serve with ``--heads``),
- ``shared, raw mean``: the same space scored by an item's mean projected vector (the control
  that shows why the scores are standardised per modality),
- ``random``: 10 random other items.

Reported: the share of neighbours that share a genre / category with the query, the mean
co-consumption cosine of query and neighbour (all interactions), and the share of neighbours
without an image (what only the shared space can reach), beside that share in the catalogue.

    python benchmarks/cold_image_queries.py --work /tmp/align_recall
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # work subfolder -> (catalogue, label column, its separator)
    "ml100k-mm": ("{data}/ml100k-mm", "genres", "|"),
    "generated": ("{work}/shop", "category", None),
}


def neighbour_stats(name: str, catalog: str, column: str, sep: str | None, work: Path, heads: str) -> dict:
    from metamodal.data import load_dataset
    from metamodal.data.loaders.embeddings import load_embeddings
    from metamodal.extract.shared_space import IMAGE_SHARED, TEXT_SHARED, project, shared_space

    ds = load_dataset(catalog)
    ds.modalities.update(load_embeddings(work / name / "emb", ds))
    space = shared_space(ds, work / name / heads)
    pairs = np.load(work / name / heads / "heads_pairs.npz")
    img = ds.modalities[space.reads["image"]]
    unit = img.features / np.maximum(np.linalg.norm(img.features, axis=1, keepdims=True), 1e-12)
    (tx, tp), (ix, ip) = space.rows[TEXT_SHARED], space.rows[IMAGE_SHARED]
    mean_vec = tx * tp[:, None] + ix * ip[:, None]
    mean_vec /= np.maximum(np.linalg.norm(mean_vec, axis=1, keepdims=True), 1e-12)
    labels = [set(str(v).split(sep)) if sep else {str(v)} for v in ds.item_meta[column]]
    a = ds.matrix().T.tocsr().astype(np.float64)
    co = (a @ a.T).toarray()
    norm = np.sqrt(np.maximum(np.diag(co), 1))
    co = co / norm[:, None] / norm[None, :]
    rng = np.random.default_rng(0)
    out = {k: {"label": [], "co": [], "no_image": []} for k in ("image->image", "shared (heads)", "shared, raw mean", "random")}
    for i in pairs["items"][pairs["split"] == 2]:
        q = project(space.heads.image, img.features[i : i + 1])[0]
        scores = {"image->image": np.where(img.present, unit @ unit[i], -np.inf),
                  "shared (heads)": space.item_scores(q),
                  "shared, raw mean": np.where(tp | ip, mean_vec @ q, -np.inf)}  # fmt: skip
        tops = {k: np.argsort(-np.where(np.arange(ds.n_items) == i, -np.inf, s), kind="stable")[:10]
                for k, s in scores.items()}  # fmt: skip
        tops["random"] = rng.choice(np.flatnonzero(np.arange(ds.n_items) != i), 10, replace=False)
        for k, top in tops.items():
            out[k]["label"].append(np.mean([bool(labels[i] & labels[j]) for j in top]))
            out[k]["co"].append(co[i, top].mean())
            out[k]["no_image"].append(np.mean(~img.present[top]))
    rows = {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in out.items()}
    return {"catalogue": name, "heads": heads, "queries": int((pairs["split"] == 2).sum()),
            "label": column, "catalogue_no_image": float(np.mean(~img.present)), "methods": rows}  # fmt: skip


def markdown(results: list[dict]) -> str:
    from metamodal.eval.tables import markdown_table

    header = ["catalogue (queries)", "method", "shares a label", "co-consumption cosine", "neighbours without image"]
    body = [[f"{r['catalogue']} ({r['queries']}, {r['heads']})", k, f"{m['label']:.3f}", f"{m['co']:.3f}",
             f"{m['no_image']:.3f} (catalogue {r['catalogue_no_image']:.3f})"]
            for r in results for k, m in r["methods"].items()]  # fmt: skip
    return markdown_table(header, body) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/align_recall"))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cold_image_queries_cpu")
    a = ap.parse_args()
    from align_recall import heads_dir  # this folder's sibling script: the runs it wrote

    chosen = json.loads((ROOT / "benchmarks" / "results" / "align_recall_cpu.json").read_text())["rows"]
    picks = {r["catalogue"].split()[0]: r["heads_co_weight_chosen"] for r in chosen}
    results = []
    for name, (catalog, column, sep) in CASES.items():
        results.append(neighbour_stats(name, catalog.format(data=a.data, work=a.work), column, sep, a.work,
                                       heads_dir(picks[name])))  # fmt: skip
    a.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    a.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
