"""Sweep a fusion model's hyperparameters with Ray Tune + ASHA on valid Recall@20.

python jobs/tune_fusion.py --space tune_spaces/margo.yaml --dataset ../shared/data/lfm2k \
    --out runs/tune/margo [--samples 16 --max-epochs 80 --set data.features=DIR]
ray job submit --working-dir . -- python jobs/tune_fusion.py --space ... --dataset ... --out ...
The best configuration lands in OUT/best.yaml: `python jobs/train.py ... --config OUT/best.yaml`.
"""

from __future__ import annotations

import argparse

from metamodal.tuning import run_tune


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--space", required=True, help="tune_spaces/*.yaml")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--concurrent", type=int, default=None)
    p.add_argument("--set", action="append", default=[], help="fixed override: key.path=value")
    p.add_argument("--no-wandb", action="store_true")
    a = p.parse_args()
    run_tune(a.space, a.dataset, a.out, a.set, a.samples, a.max_epochs, a.concurrent,
             wandb=not a.no_wandb)  # fmt: skip


if __name__ == "__main__":
    main()
