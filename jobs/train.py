"""Train a zoo model on Ray Train (DDP, early stopping on valid Recall@20, resumable).

python jobs/train.py --model lightgcn --dataset ../shared/data/amazon-baby --out runs/lgcn \
    [--set train.workers=2 --set params.n_layers=2] [--config best.yaml]
ray job submit --working-dir . -- python jobs/train.py --model bpr --dataset DATA --out OUT
"""

from __future__ import annotations

import argparse

from metamodal.train.runner import run_training


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], help="override: key.path=value")
    p.add_argument("--config", default=None, help="override YAML file (e.g. Tune's best)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a run made with another config"
    )
    a = p.parse_args()
    run_training(a.model, a.dataset, a.out, a.set, a.config, a.overwrite)


if __name__ == "__main__":
    main()
