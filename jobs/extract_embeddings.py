"""Extract per-modality item embeddings with Ray Data (MiniLM text; ImageNet EfficientNet-Lite
images unless a CLIP checkpoint is given).

python jobs/extract_embeddings.py CATALOG --out DIR [--arch efficientnet_lite1 | --image-weights CKPT | --random-image-init] [--no-text] ...
ray job submit --working-dir . -- python jobs/extract_embeddings.py CATALOG --out DIR ...
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.extract.pipeline import ExtractOptions, build_config, run_extraction
from metamodal.workflows.options import CatalogIO


def main() -> None:
    io, options = parse_flags([CatalogIO, ExtractOptions], __doc__)  # as `metamodal extract`
    run_extraction(io.catalog, io.out, build_config(options), io.format)


if __name__ == "__main__":
    main()
