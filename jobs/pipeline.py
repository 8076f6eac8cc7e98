"""The end-to-end pipeline on the embedded default catalog (what ``make demo`` runs).

Locally: ``python jobs/pipeline.py --out runs/demo``; on a cluster:
``ray job submit --working-dir . -- python jobs/pipeline.py --out /tmp/demo``.
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.data.synth import SynthConfig
from metamodal.workflows.demo import run_demo
from metamodal.workflows.options import DemoOptions


def main() -> None:
    demo, synth = parse_flags([DemoOptions, SynthConfig], __doc__)
    run_demo(demo.out, synth, demo.stop_after)


if __name__ == "__main__":
    main()
