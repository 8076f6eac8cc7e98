"""Extract per-modality item embeddings with Ray Data (MiniLM text; ImageNet EfficientNet-Lite
images unless a CLIP checkpoint is given).

python jobs/extract_embeddings.py CATALOG --out DIR [--arch efficientnet_lite1 | --image-weights CKPT | --random-image-init] [--no-text] ...
ray job submit --working-dir . -- python jobs/extract_embeddings.py CATALOG --out DIR ...
"""

from __future__ import annotations

import argparse

from metamodal.config import add_model_flags, flags_to_model
from metamodal.extract.pipeline import ExtractOptions, build_config, run_extraction


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("catalog")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default=None)
    add_model_flags(p, ExtractOptions)  # every option, as `metamodal extract` has it
    a = vars(p.parse_args())
    catalog, out, fmt = a.pop("catalog"), a.pop("out"), a.pop("format")
    run_extraction(catalog, out, build_config(flags_to_model(ExtractOptions, a, p)), fmt)


if __name__ == "__main__":
    main()
