"""Train MMA's menu router (warm start + expected-reward RL on Ray Train with DeepSpeed) and, with
``--set llm_rank=on``, the listwise ``llm_rank`` tool, behind the zoo models, per seed, and write
the report — the same path as ``metamodal mma run``.

python jobs/train_policy.py --dataset ../shared/data/lfm2k --out runs/mma [--quick] \
    [--set policy.rl_epochs=3 --set policy.workers=4]
ray job submit --working-dir . -- python jobs/train_policy.py --dataset DATA --out OUT
"""

from __future__ import annotations

import argparse

from metamodal.agent.config import load_mma_config
from metamodal.agent.run import run_mma


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="the demo's budget")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--set", action="append", default=[], help="override: key.path=value")
    a = p.parse_args()
    run_mma(a.dataset, a.out, load_mma_config(a.set, a.quick, a.seeds))


if __name__ == "__main__":
    main()
