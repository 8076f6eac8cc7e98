"""Sweep a fusion model's hyperparameters with Ray Tune + ASHA on valid Recall@20.

python jobs/tune_fusion.py --space tune_spaces/margo.yaml --dataset ../shared/data/lfm2k \
    --out runs/tune/margo [--samples 16 --max-epochs 80 --set data.features=DIR]
ray job submit --working-dir . -- python jobs/tune_fusion.py --space ... --dataset ... --out ...
The best configuration lands in OUT/best.yaml: `python jobs/train.py ... --config OUT/best.yaml`.
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.tuning import run_tune
from metamodal.workflows.options import TuneOptions


def main() -> None:
    o = parse_flags(TuneOptions, __doc__)  # the flags of `metamodal tune`
    run_tune(o.space, o.dataset, o.out, o.set, o.samples, o.max_epochs, o.concurrent, o.wandb)


if __name__ == "__main__":
    main()
