"""Every stage of the platform on one catalogue (what ``make demo`` runs on the synthetic shop):
inspect → split + missingness → extract → align → zoo → Tune → MMA → evaluation → next item → [Serve].

Locally: ``python jobs/pipeline.py --catalog data/my-shop --out runs/my-shop --quick``; without
``--catalog`` it generates the shop into OUT/catalog. On a cluster:
``ray job submit --working-dir . -- python jobs/pipeline.py --catalog /shared/my-shop --out /shared/runs``.
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.data.synth import SynthConfig
from metamodal.workflows.demo import run_demo
from metamodal.workflows.options import PipelineJob


def main() -> None:
    opts, synth = parse_flags([PipelineJob, SynthConfig], __doc__)
    run_demo(opts, synth)


if __name__ == "__main__":
    main()
