"""The end-to-end pipeline on the embedded default catalog (what ``make demo`` runs).

Locally: ``python jobs/pipeline.py --out runs/demo``; on a cluster:
``ray job submit --working-dir . -- python jobs/pipeline.py --out /tmp/demo``.
"""

from __future__ import annotations

import argparse

from metamodal.data.synth import SynthConfig
from metamodal.workflows.demo import run_demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--items", type=int, default=SynthConfig.n_items)
    p.add_argument("--users", type=int, default=SynthConfig.n_users)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-after", type=int, default=11, help="6: end after extraction")
    a = p.parse_args()
    run_demo(a.out, SynthConfig(n_items=a.items, n_users=a.users, seed=a.seed), a.stop_after)


if __name__ == "__main__":
    main()
