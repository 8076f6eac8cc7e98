"""Evaluate finished zoo runs: valid/test full ranking, then test with content masked at serving
time (graph only, graph + each content group) — table, JSON and plot in OUT.

python jobs/evaluate.py --runs runs/zoo/lfm2k/margo runs/zoo/lfm2k/late_fusion --out runs/eval
ray job submit --working-dir . -- python jobs/evaluate.py --runs DIR [DIR ...] --out OUT
The agent's four evidence checks are `jobs/train_policy.py` (`metamodal mma run`).
"""

from __future__ import annotations

import argparse

from metamodal.workflows.runs import evaluate_runs


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", nargs="+", required=True, help="run directories (results.json)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    evaluate_runs(a.runs, a.out)


if __name__ == "__main__":
    main()
