"""CLIP domain alignment on Ray Train (contrastive image-text fine-tuning on the catalog).

python jobs/align_clip.py CATALOG --out DIR [--epochs 12] [--co-weight 0.5] [--init CKPT]
ray job submit --working-dir . -- python jobs/align_clip.py CATALOG --out DIR ...

Every AlignConfig field is a flag (``--co-weight``, ``--workers``, ...). The output's
``aligned.pt`` goes to ``jobs/extract_embeddings.py --image-weights``.
"""

from __future__ import annotations

import argparse
import dataclasses

from metamodal.extract.align import AlignConfig, run_align


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("catalog")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace a run made with another config")
    for f in dataclasses.fields(AlignConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool | None", "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).removesuffix(" | None"), str)
            p.add_argument(flag, type=kind, default=f.default)
    a = vars(p.parse_args())
    catalog, out, fmt, overwrite = a.pop("catalog"), a.pop("out"), a.pop("format"), a.pop("overwrite")
    run_align(catalog, out, AlignConfig(**a), fmt, overwrite=overwrite)


if __name__ == "__main__":
    main()
