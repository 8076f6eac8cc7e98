"""Train MMA's menu router (warm start + expected-reward RL on Ray Train with DeepSpeed) and, with
``--set llm_rank=on``, the listwise ``llm_rank`` tool, behind the zoo models, per seed, and write
the report — the same path as ``metamodal mma run``.

python jobs/train_policy.py --dataset ../shared/data/lfm2k --out runs/mma [--quick] \
    [--set policy.rl_epochs=3 --set policy.workers=4]
ray job submit --working-dir . -- python jobs/train_policy.py --dataset DATA --out OUT
"""

from __future__ import annotations

from metamodal.agent.config import load_mma_config
from metamodal.agent.run import run_mma
from metamodal.config import parse_flags
from metamodal.workflows.options import MMARunOptions


def main() -> None:
    o = parse_flags(MMARunOptions, __doc__)  # the flags of `metamodal mma run`
    cfg = load_mma_config(o.overrides(), o.quick, o.seeds)
    run_mma(str(o.dataset), o.out, cfg, reevaluate=o.reevaluate)


if __name__ == "__main__":
    main()
