"""Train a zoo model on Ray Train (DDP, early stopping on valid Recall@20, resumable).

python jobs/train.py --model lightgcn --dataset ../shared/data/amazon-baby --out runs/lgcn \
    [--set train.workers=2 --set params.n_layers=2] [--config best.yaml]
ray job submit --working-dir . -- python jobs/train.py --model bpr --dataset DATA --out OUT
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.train.runner import run_training
from metamodal.workflows.options import TrainOptions


def main() -> None:
    o = parse_flags(TrainOptions, __doc__)  # the flags of `metamodal train`
    run_training(o.model, o.dataset, o.out, o.set, o.config, o.overwrite)


if __name__ == "__main__":
    main()
