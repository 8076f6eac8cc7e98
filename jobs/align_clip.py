"""CLIP domain alignment on Ray Train (contrastive image-text fine-tuning on the catalog).

python jobs/align_clip.py CATALOG --out DIR [--epochs 12] [--co-weight 0.5] [--init CKPT]
ray job submit --working-dir . -- python jobs/align_clip.py CATALOG --out DIR ...

Every AlignConfig field is a flag (``--co-weight``, ``--workers``, ...). The output's
``aligned.pt`` goes to ``jobs/extract_embeddings.py --image-weights``.
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.extract.align import run_align
from metamodal.extract.options import AlignConfig
from metamodal.workflows.options import AlignIO


def main() -> None:
    io, cfg = parse_flags([AlignIO, AlignConfig], __doc__)  # as `metamodal align`
    run_align(io.catalog, io.out, cfg, io.format, split=io.split, overwrite=io.overwrite)


if __name__ == "__main__":
    main()
