"""The sequential run's report: mean ± std over seeds per method, condition and protocol, the
history-length slices, and bar charts — ``report.json``, ``report.md``, ``report_*.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metamodal.eval.sequential import FULL, SAMPLED
from metamodal.eval.tables import markdown_table
from metamodal.rundir import write_json
from metamodal.seq.config import READS_CONTENT, SeqConfig

PROTOCOLS = {
    "sampled": ("sampled: the target among {n} random items the user never interacted with", SAMPLED),
    "full": ("full ranking over the catalogue, history masked", FULL),
}


def _cols(spec: dict[str, tuple[int, ...]]) -> list[str]:
    return [f"{k}@{n}" for k, ns in spec.items() for n in ns]


def aggregate(seeds: list[dict]) -> dict:
    """method → condition → protocol → metric → [mean, std] (over seeds); and the slices."""
    out: dict = {}
    for method in seeds[0]["methods"]:
        for cond in seeds[0]["methods"][method]["conditions"]:
            runs = [s["methods"][method]["conditions"][cond] for s in seeds]
            row = {p: {k: [float(np.mean([r[p][k] for r in runs])), float(np.std([r[p][k] for r in runs]))]
                       for k in runs[0][p]} for p in PROTOCOLS}  # fmt: skip
            row["by_history"] = {b: {k: float(np.mean([r["by_history"][b][k] for r in runs])) for k in v}
                                 for b, v in runs[0]["by_history"].items()}  # fmt: skip
            row["users"] = runs[0].get("users")
            out.setdefault(method, {})[cond] = row
    return out


def comparisons(per_user: list[dict[str, np.ndarray]], methods: list[str], conds: list[str]) -> dict:
    """Each method against ``sasrec`` (the ID-only baseline), and ``keyword_llm`` against
    ``mm_sasrec`` and against its control ``keyword_overlap``, per condition (for methods that read content) and kept metric: the relative
    gain of the means and a paired Wilcoxon over the test users of every seed that both read."""
    from metamodal.eval.paired import paired_wilcoxon
    from metamodal.seq.run import PAIRED

    pairs = [(m, "sasrec") for m in methods if m != "sasrec" and "sasrec" in methods]
    pairs += [("keyword_llm", b) for b in ("mm_sasrec", "keyword_overlap") if {"keyword_llm", b} <= set(methods)]
    out: dict = {}
    for m, base in pairs:
        for c in conds if m in READS_CONTENT else conds[:1]:
            for proto, k in PAIRED:
                a, b = (np.concatenate([pu[f"{x}|{c}|{proto}|{k}"] for pu in per_user]) for x in (m, base))
                read = np.isfinite(a) & np.isfinite(b)
                t = paired_wilcoxon(a[read], b[read])
                t["relative"] = float(a[read].mean() / b[read].mean() - 1) if b[read].mean() > 0 else float("nan")
                out[f"{m}_vs_{base}|{c}|{proto} {k}"] = t
    return out


def markdown(rep: dict) -> str:
    agg, n = rep["results"], rep["n_negatives"]
    lines = [f"# Sequential recommendation on {Path(rep['dataset']).name} ({rep['seeds']} seeds, "
             f"leave-last-out by time, {rep['test_users']} test users)", ""]  # fmt: skip
    for proto, (title, spec) in PROTOCOLS.items():
        cols = _cols(spec)
        rows = [[m + (f" ({r['users']} users)" if r.get("users") not in (None, rep["test_users"]) else ""), c,
                 *(f"{r[proto][k][0]:.4f} ± {r[proto][k][1]:.4f}" for k in cols)]
                for m, conds in agg.items() for c, r in conds.items()
                if m in READS_CONTENT or c == "full"]  # the others score the same under every condition  # fmt: skip
        lines += [f"## Protocol: {title.format(n=n)}", "", markdown_table(["method", "condition", *cols], rows), ""]
    buckets = list(next(iter(agg.values()))["full"]["by_history"])
    rows = [[m, *(f"{conds['full']['by_history'][b]['sampled_hr@5']:.4f} / {conds['full']['by_history'][b]['full_ndcg@10']:.4f}"
                  for b in buckets)] for m, conds in agg.items()]  # fmt: skip
    lines += ["## By history length (condition full): sampled HR@5 / full NDCG@10", "",
              markdown_table(["method", *(f"{b} items" for b in buckets)], rows), ""]  # fmt: skip
    rows = [[k.split("|")[0], k.split("|")[1], k.split("|")[2], f"{t['relative'] * 100:+.1f}%",
             f"{t['mean_diff']:+.4f}", f"{t['wilcoxon_p']:.3g}"] for k, t in rep["comparisons"].items()]  # fmt: skip
    lines += ["## Comparisons (paired over the test users × seeds both read)", "",
              markdown_table(["comparison", "condition", "metric", "relative", "mean diff", "Wilcoxon p"], rows), ""]
    spent = sum(sum(v) for v in rep["method_seconds"].values())
    lines += [f"Wall time {rep['wall_seconds'] / 60:.1f} min (this invocation; the methods' own {spent / 60:.1f} min, "
              "kept ones included); conditions: "
              + "; ".join(f"`{c}` hides {', '.join(h) or 'nothing'}" for c, h in rep["conditions"].items()) + "."]
    return "\n".join(lines)


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = rep["results"]
    conds = list(next(iter(agg.values())))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (proto, key) in zip(axes, (("sampled", "hr@5"), ("full", "ndcg@10")), strict=True):
        w = 0.8 / len(agg)
        for i, (m, rows) in enumerate(agg.items()):
            ax.bar(np.arange(len(conds)) + i * w, [rows[c][proto][key][0] for c in conds], w,
                   yerr=[rows[c][proto][key][1] for c in conds], label=m)  # fmt: skip
        ax.set_xticks(np.arange(len(conds)) + 0.4 - w / 2, conds)
        ax.set_title(f"{proto}: {key.upper()}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(agg), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # the legend below the panels, off the bars
    fig.savefig(path, dpi=110)
    plt.close(fig)


LLM_FACTS = ("eval_users", "train_rows", "train_seconds", "bc_loss_first", "bc_loss_last")


def write_report(out: Path, dataset: str, cfg: SeqConfig, seeds: list[dict], per_user: list[dict],
                 wall: float) -> dict:  # fmt: skip
    methods, conds = list(seeds[0]["methods"]), list(seeds[0]["conditions"])
    rep = {"dataset": dataset, "seeds": len(seeds), "n_negatives": cfg.n_negatives,
           "test_users": seeds[0]["test_users"], "conditions": seeds[0]["conditions"],
           "results": aggregate(seeds), "comparisons": comparisons(per_user, methods, conds),
           "wall_seconds": wall, "method_seconds": {m: [s["methods"][m]["seconds"] for s in seeds] for m in methods},
           "keyword_llm": [{k: s["methods"]["keyword_llm"].get(k) for k in LLM_FACTS}
                           for s in seeds if "keyword_llm" in s["methods"]],
           "config": cfg.model_dump()}  # fmt: skip
    write_json(out / "report.json", rep, indent=1)
    md = markdown(rep)
    (out / "report.md").write_text(md + "\n")
    plot(rep, out / "report.png")
    print(md, flush=True)
    return rep
