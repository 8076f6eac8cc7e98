"""How good an item's keywords are, as MMSRARec's summariser reward scores them — measured on
every ``metamodal keywords`` run, and the reward a tuned summariser will train on:

- ``kept``: information kept, the cosine of the keywords' MiniLM embedding to the full text's;
- ``found``: reconstructability, 1 / rank of the item when its keywords are the query over the
  item and its ``neighbours`` nearest items by full text (1: the item is found first);
- ``length``: the keyword line's length in words (charged by the reward, ``length_cost`` each).
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 20


def neighbourhoods(text_emb: np.ndarray, have: np.ndarray, k: int = NEIGHBOURS,
                   chunk: int = 1024) -> np.ndarray:  # fmt: skip
    """[n_items, k + 1]: each item, then its ``k`` nearest items with text (by full text).
    Scored ``chunk`` items at a time: memory stays bounded on a large catalogue."""
    hood = np.zeros((len(text_emb), k + 1), np.int64)
    for s in range(0, len(text_emb), chunk):
        rows = np.arange(s, min(s + chunk, len(text_emb)))
        sim = text_emb[rows] @ text_emb[have].T
        sim[rows[:, None] == have[None, :]] = -np.inf  # never an item's own neighbour
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, 1), axis=1, kind="stable")
        hood[rows, 0] = rows
        hood[rows, 1:] = have[np.take_along_axis(top, order, 1)]
    return hood


def reward_terms(kw_emb: np.ndarray, items: np.ndarray, n_words: np.ndarray, text_emb: np.ndarray,
                 hood: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """Per row: keyword embeddings ``kw_emb`` of ``items`` (L2-normalised, zeros for none)."""
    kept = (kw_emb * text_emb[items]).sum(1)
    q = np.einsum("nd,nkd->nk", kw_emb, text_emb[hood[items]])
    rank = (q >= q[:, :1]).sum(1)  # ties count against the item (empty keywords: last)
    return {"kept": kept, "found": 1.0 / rank, "length": n_words.astype(np.float64)}


def keyword_words(line: str) -> int:
    return len(line.replace(",", " ").split())


def reward(terms: dict[str, np.ndarray], length_cost: float = 0.01) -> np.ndarray:
    return terms["kept"] + terms["found"] - length_cost * terms["length"]


def keyword_quality(out, catalog, fmt: str | None = None) -> dict:
    """The three terms' means over the items that have text keywords (MiniLM embeds the full
    texts here; the keyword embeddings are the run's own)."""
    from metamodal.data import load_dataset
    from metamodal.data.loaders.embeddings import embedding_matrix, read_modality
    from metamodal.data.modalities import has_text
    from metamodal.extract.encoders import Encoder, EncoderSpec
    from metamodal.llm import quiet_transformers

    quiet_transformers()  # no weight-loading bar in the command's summary
    ds = load_dataset(catalog, fmt)
    t = read_modality(out, "text_keywords")
    ok = np.asarray(t.column("present"))
    idx = np.asarray(t.column("idx"))[ok]
    words = [w for w, o in zip(t.column("labels").to_pylist(), ok, strict=True) if o]
    if not len(idx):
        return {"items": 0}
    texts, minilm = ds.modalities["text"].texts, Encoder(EncoderSpec("minilm", "text"))
    have = np.array([i for i, x in enumerate(texts) if has_text(x)])
    text_emb = embed_texts(minilm, texts, have, ds.n_items)
    hood = neighbourhoods(text_emb, have, min(NEIGHBOURS, len(have) - 1))
    terms = reward_terms(embedding_matrix(t)[ok], idx, np.array([keyword_words(w) for w in words]), text_emb, hood)
    return {"items": int(len(idx)), **{k: float(v.mean()) for k, v in terms.items()},
            "reward": float(reward(terms).mean())}  # fmt: skip


def embed_texts(minilm, texts: list[str | None], rows: np.ndarray, n: int) -> np.ndarray:
    """[n, d] MiniLM embeddings of ``texts[rows]`` (zeros elsewhere)."""
    out = np.zeros((n, minilm.dim), np.float32)
    for s in range(0, len(rows), 256):
        out[rows[s : s + 256]] = minilm.encode_texts([texts[i] for i in rows[s : s + 256]])
    return out
