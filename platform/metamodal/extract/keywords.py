"""Keyword summaries of item text by an instruction-tuned LLM (MMSRARec's item summariser): at
most ``k`` short keywords per item, greedy, so a rerun writes the same words. They run as an
extraction encoder (``EncoderSpec("llm_keywords", ...)``): sharded, resumable and counted like
every modality, with the MiniLM embedding of the keyword line as the row's embedding and the
keywords themselves in its ``labels`` column. The default LLM is the packaged SmolLM2-135M-
Instruct (nothing downloaded); any Hugging Face causal LM by name or path on GPUs.
"""

from __future__ import annotations

import re

import torch

MAX_TEXT_TOKENS = 128  # an item's text beyond this says little more about its keywords
WORDS_PER_KEYWORD = 3

SYSTEM = "You write short keywords for catalogue items."  # short: the default system prompt is 30 tokens
PROMPT = "At most {k} keywords, comma-separated:\n{text}"
# one worked example: a 135M model copies the item's first words without it
EXAMPLE = ("Alien (1979). Horror, Sci-Fi. A spaceship crew meets a deadly lifeform on a distant moon.",
           "space horror, alien creature, spaceship crew, survival")


def parse_keywords(raw: str, k: int) -> list[str]:
    """The model's answer as at most ``k`` distinct lower-case keywords of at most three
    words; bullets, numbering and quotes dropped."""
    out: list[str] = []
    raw = re.sub(r"(?im)^\s*(?:keywords?|item)\s*:\s*", "", raw)  # a label the model echoes
    raw = re.sub(r"(?m)^\s*(?:\d+[.)]|[-*•])\s*", "", raw)  # list numbering and bullets
    for part in re.split(r"[,;\n]|\.(?:\s|$)|\s-\s", raw):
        w = re.sub(r"^[\s\"']+|[\s\"'.]+$", "", part).lower()
        w = " ".join(w.split()[:WORDS_PER_KEYWORD])
        if w and w not in out and len(w) <= 40:
            out.append(w)
        if len(out) == k:
            break
    return out


def prompts_for(tok, texts: list[str], k: int = 5) -> list[str]:
    """The summariser's chat prompts (a short system line, one worked example, the item's text
    cut to ``MAX_TEXT_TOKENS``): what it reads at inference and in reward tuning alike."""
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False).input_ids[:MAX_TEXT_TOKENS]
        msg = [{"role": "system", "content": SYSTEM},
               {"role": "user", "content": PROMPT.format(k=k, text=EXAMPLE[0])},
               {"role": "assistant", "content": EXAMPLE[1]},
               {"role": "user", "content": PROMPT.format(k=k, text=tok.decode(ids))}]  # fmt: skip
        out.append(tok.apply_chat_template(msg, add_generation_prompt=True, tokenize=False))
    return out


class KeywordWriter:
    """The LLM and its tokenizer, loaded once per encode actor."""

    def __init__(self, model: str, device: str = "cpu", k: int = 5) -> None:
        from metamodal.llm import load_model, load_tokenizer, materialise

        src = materialise(model)
        self.tok, self.k, self.device = load_tokenizer(src), k, device
        self.net = load_model(src).to(device).eval()

    @torch.inference_mode()
    def summarise(self, texts: list[str]) -> list[list[str]]:
        enc = self.tok(prompts_for(self.tok, texts, self.k), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        gen = self.net.generate(**enc, max_new_tokens=6 * self.k, do_sample=False,
                                pad_token_id=self.tok.pad_token_id)  # fmt: skip
        answers = self.tok.batch_decode(gen[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
        return [parse_keywords(a, self.k) for a in answers]


def keyword_config(o):
    """The extraction that writes keywords (``o``: ``KeywordOptions``): ``text_keywords`` from
    the LLM, and ``image_effnet`` whose labels are the visual keywords."""
    from metamodal.extract.encoders import EncoderSpec
    from metamodal.extract.pipeline import ExtractConfig

    encoders = [EncoderSpec("llm_keywords", "text_keywords", arch=o.llm)]
    if o.image:
        encoders.append(EncoderSpec("efficientnet_image", "image_effnet", arch="efficientnet_lite0"))
    run = o.model_dump(include={"batch_size", "actors", "shard_size", "device", "overwrite"})
    return ExtractConfig(encoders=encoders, **{k: v for k, v in run.items() if v is not None})


def keyword_counts(out) -> dict[str, int]:
    """Items with text keywords, with visual keywords, with both and with neither (those get
    none: counted, never dropped)."""
    import numpy as np

    from metamodal.data.loaders.embeddings import read_modality
    from metamodal.rundir import ExtractRun

    have, manifest = {}, ExtractRun(out).manifest()
    for name in manifest.modalities:
        t = read_modality(out, name)
        labels = t.column("labels").to_pylist() if "labels" in t.column_names else [None] * t.num_rows
        idx = np.asarray(t.column("idx"))
        said = np.zeros(manifest.items, bool)
        said[idx] = [bool(x) for x in labels]
        have[name] = said
    text = have.get("text_keywords", np.zeros(manifest.items, bool))
    image = have.get("image_effnet", np.zeros_like(text))
    return {"items": len(text), "text_keywords": int(text.sum()), "visual_keywords": int(image.sum()),
            "both": int((text & image).sum()), "neither": int((~text & ~image).sum())}  # fmt: skip
