"""The monitor's outputs: ``monitor.json``, ``monitor.md`` (tables, flags) and the plots a
person would rather look at (coverage per run, drift per modality, reliability diagrams)."""

from __future__ import annotations

from pathlib import Path

from metamodal.eval.tables import markdown_table
from metamodal.rundir.base import write_json
from metamodal.rundir.html import write_html


def _num(v, fmt: str = ".3f") -> str:
    return "–" if v is None else format(v, fmt)


def markdown(result: dict) -> str:
    rows = []
    for name, m in result["modalities"].items():
        c, d, nb = m["coverage"], m["drift"], m.get("neighbours", {})
        rows.append([name, f"{c['reference']:,}", f"{c['current']:,}", _num(c["change"], "+.3f"),
                     {True: "yes", False: "no", None: d.get("note", "–")}[d.get("detected")],
                     _num(d.get("score"), ".4g"), _num(d.get("p_value"), ".3g"),
                     _num(d.get("drifted_dimensions"), ".2f"), _num(d.get("domain_classifier_auc")),
                     _num(nb.get("overlap@k"))])  # fmt: skip
    lines = [f"# Monitor: {result['current']} against {result['reference']}", "",
             markdown_table(["modality", "present (ref)", "present (cur)", "share change", "drift",
                             "MMD²", "p", "dims drifted", "domain AUC", "top-10 overlap"], rows), "",
             "Drift: alibi-detect's MMD test decides (p < 0.05); dims drifted = share of dimensions "
             "whose KS test rejects (Bonferroni); domain AUC 0.5 = the runs cannot be told apart; "
             "top-10 overlap = each common item's 10 nearest neighbours kept (1 = geometry unchanged)."]  # fmt: skip
    cal = result.get("calibration")
    if cal and "patterns" in cal:
        lines += ["", f"## Calibration of {cal['model']}'s score (Platt-scaled on validation; test pairs)", "",
                  markdown_table(["items showing", "pairs", "positives", "ECE", "score p10 / p50 / p90"],
                                 [[k, f"{p['pairs']:,}", f"{p['positives']:,}", f"{p['ece']:.3f}",
                                   " / ".join(f"{q:.2f}" for q in p["score_quantiles"])]
                                  for k, p in cal["patterns"].items()]),
                  "", f"Overall ECE {cal['overall']['ece']:.3f} over {cal['overall']['pairs']:,} pairs."]  # fmt: skip
    lines += ["", "## Flags", ""] + ([f"- {f}" for f in result["flags"]] or ["- none"])
    return "\n".join(lines) + "\n"


def plot(result: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["modalities"])
    paths = [out / "coverage_drift.png"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = range(len(names))
    cov = [result["modalities"][n]["coverage"] for n in names]
    a.bar([i - 0.2 for i in x], [c["reference"] for c in cov], 0.4, label="reference")
    a.bar([i + 0.2 for i in x], [c["current"] for c in cov], 0.4, label="current")
    a.set_xticks(list(x), names, rotation=20)
    a.set_title("items present")
    a.legend()
    auc = [result["modalities"][n]["drift"].get("domain_classifier_auc") or 0.5 for n in names]
    colors = ["tab:red" if result["modalities"][n]["drift"].get("detected") else "tab:green" for n in names]
    b.bar(list(x), auc, color=colors)
    b.axhline(0.5, ls=":", c="grey")
    b.set_ylim(0.4, 1.0)
    b.set_xticks(list(x), names, rotation=20)
    b.set_title("domain classifier AUC (red: MMD drift)")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    cal = result.get("calibration", {})
    if cal.get("patterns"):
        paths.append(out / "reliability.png")
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.plot([0, 1], [0, 1], ls=":", c="grey")
        for name, p in cal["patterns"].items():
            ax.plot([r["confidence"] for r in p["bins"]], [r["observed"] for r in p["bins"]], marker="o",
                    label=f"{name} (ECE {p['ece']:.3f})")  # fmt: skip
        ax.set_xlabel("Platt-scaled score")
        ax.set_ylabel("observed interaction rate")
        ax.set_title(f"reliability per modality pattern ({cal['model']})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(paths[1], dpi=110)
        plt.close(fig)
    return paths


def write_report(result: dict, out: Path) -> None:
    result["plots"] = [str(p) for p in plot(result, out)]
    write_json(out / "monitor.json", result, indent=2)
    (out / "monitor.md").write_text(markdown(result))
    write_html(out / "monitor.md", config={k: result[k] for k in ("reference", "current", "current_run")},
               images=[Path(p) for p in result["plots"]])  # fmt: skip
    print(markdown(result), flush=True)
