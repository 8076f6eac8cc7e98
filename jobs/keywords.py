"""Keyword summaries per item with Ray Data: the LLM's keywords of the text (SmolLM2-135M-Instruct
by default; any Hugging Face causal LM on GPUs) and the image classifier's top ImageNet classes
as visual keywords — the same path as ``metamodal keywords``.

python jobs/keywords.py CATALOG --out DIR [--llm HF_NAME --device cuda] [--no-image]
ray job submit --working-dir . -- python jobs/keywords.py CATALOG --out DIR
"""

from __future__ import annotations

from metamodal.config import parse_flags
from metamodal.extract.keywords import keyword_config, keyword_counts
from metamodal.extract.options import KeywordOptions
from metamodal.extract.pipeline import run_extraction
from metamodal.workflows.options import CatalogIO


def main() -> None:
    io, options = parse_flags([CatalogIO, KeywordOptions], __doc__)  # as `metamodal keywords`
    run_extraction(io.catalog, io.out, keyword_config(options), io.format)
    print(keyword_counts(io.out))


if __name__ == "__main__":
    main()
