"""Does MMA's router lose anything on the bottom layers of its LM? Two ``metamodal mma run``
outputs that differ only in ``policy.depth`` (same dataset, zoo, seeds and episodes: copy the
first run's ``zoo/`` into the second's directory before running it), compared episode by
episode with a paired Wilcoxon per check.

    python benchmarks/router_depth.py --base runs/depth/lfm2k_full --other runs/depth/lfm2k_d8 \
        --out benchmarks/results/router_depth_lfm2k_cpu.json

Writes FILE.json and FILE.md: MMA-Auto's NDCG@10 per check for both, the episodes
whose NDCG@10 changed, the paired test, and each run's policy training time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def seeds_of(run: Path) -> dict[int, dict]:
    return {int(d.name[4:]): json.loads((d / "result.json").read_text())
            for d in sorted(run.glob("seed*")) if (d / "result.json").is_file()}  # fmt: skip


def compare(base: dict[int, dict], other: dict[int, dict], method: str) -> list[dict]:
    from metamodal.eval.paired import paired_wilcoxon

    shared = sorted(set(base) & set(other))
    if not shared:
        raise SystemExit("the two runs share no finished seed")
    rows = []
    for check in base[shared[0]]["per_episode"]:
        a = np.concatenate([base[s]["per_episode"][check][method] for s in shared])
        b = np.concatenate([other[s]["per_episode"][check][method] for s in shared])
        rows.append({"check": check, "episodes": len(a), "base": float(a.mean()), "other": float(b.mean()),
                     "changed": int(np.sum(a != b)), **paired_wilcoxon(b, a)})  # fmt: skip
    return rows


def main() -> None:
    from metamodal.agent.menu_net import layers_read
    from metamodal.eval.tables import markdown_table
    from metamodal.rundir import write_json

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, type=Path)
    p.add_argument("--other", required=True, type=Path)
    p.add_argument("--method", default="mma_auto")
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    base, other = seeds_of(a.base), seeds_of(a.other)
    rows = compare(base, other, a.method)
    first = min(set(base) & set(other))
    depths = layers_read(base[first]["policy"]), layers_read(other[first]["policy"])
    seconds = [[round(r["policy_seconds"]) for r in runs.values()] for runs in (base, other)]
    res = {"base": str(a.base), "other": str(a.other), "method": a.method, "depths": depths,
           "policy_seconds": seconds, "checks": rows}  # fmt: skip
    write_json(a.out, res, indent=2)
    table = markdown_table(
        ["check", "episodes", f"depth {depths[0]}", f"depth {depths[1]}", "NDCG changed", "diff", "Wilcoxon p"],
        [[r["check"], str(r["episodes"]), f"{r['base']:.4f}", f"{r['other']:.4f}", str(r["changed"]),
          f"{r['mean_diff']:+.4f}", f"{r['wilcoxon_p']:.3g}"] for r in rows],
    )  # fmt: skip
    md = [f"# {a.method}: router on {depths[0]} vs {depths[1]} LM layers", "",
          f"`{a.base}` vs `{a.other}`; policy training seconds per seed {seconds[0]} vs {seconds[1]}.", "",
          table, ""]  # fmt: skip
    a.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
