"""Sequential recommendation (popularity, SASRec, multimodal SASRec, the keyword-RAG LLM) on a
leave-last-out split by time, both protocols, with text or image missing — the same path as
``metamodal seq run``.

python jobs/seq_run.py --dataset ../shared/data/ml100k-mm --features runs/ml100k/embeddings \
    --keywords runs/ml100k/keywords \
    --out runs/seq/ml100k [--quick] [--set train.workers=2 --set train.use_gpu=true]
ray job submit --working-dir . -- python jobs/seq_run.py --dataset DATA --out OUT
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.seq.config import load_seq_config
from metamodal.seq.run import run_seq
from metamodal.workflows.options import SeqRunOptions


def main() -> None:
    o = parse_flags(SeqRunOptions, __doc__)  # the flags of `metamodal seq run`
    run_seq(str(o.dataset), o.out, load_seq_config(o.overrides(), o.quick, o.seeds))


if __name__ == "__main__":
    main()
