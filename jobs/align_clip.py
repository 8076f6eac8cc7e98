"""CLIP domain alignment on Ray Train (contrastive image-text fine-tuning on the catalog).

python jobs/align_clip.py CATALOG --out DIR [--epochs 12] [--co-weight 0.5] [--init CKPT]
ray job submit --working-dir . -- python jobs/align_clip.py CATALOG --out DIR ...

Every AlignConfig field is a flag (``--co-weight``, ``--workers``, ...). The output's
``aligned.pt`` goes to ``jobs/extract_embeddings.py --image-weights``.
"""

from __future__ import annotations

import argparse

from metamodal.config import add_model_flags, flags_to_model
from metamodal.extract.align import run_align
from metamodal.extract.options import AlignConfig


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("catalog")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace a run made with another config")
    add_model_flags(p, AlignConfig)
    a = vars(p.parse_args())
    catalog, out, fmt, overwrite = a.pop("catalog"), a.pop("out"), a.pop("format"), a.pop("overwrite")
    run_align(catalog, out, flags_to_model(AlignConfig, a, p), fmt, overwrite=overwrite)


if __name__ == "__main__":
    main()
