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


def reward_terms(kw_emb: np.ndarray, text_emb: np.ndarray, n_words: np.ndarray,
                 neighbours: int = NEIGHBOURS) -> dict[str, np.ndarray]:  # fmt: skip
    """Per item (rows: items with both keywords and text; embeddings L2-normalised)."""
    kept = (kw_emb * text_emb).sum(1)
    sim = text_emb @ text_emb.T
    np.fill_diagonal(sim, np.inf)  # the item itself first among its neighbourhood
    hood = np.argsort(-sim, axis=1)[:, : neighbours + 1]
    q = np.einsum("nd,nkd->nk", kw_emb, text_emb[hood])
    rank = (q > q[:, :1]).sum(1) + 1
    return {"kept": kept, "found": 1.0 / rank, "length": n_words.astype(np.float64)}


def reward(terms: dict[str, np.ndarray], length_cost: float = 0.01) -> np.ndarray:
    return terms["kept"] + terms["found"] - length_cost * terms["length"]


def keyword_quality(out, catalog, fmt: str | None = None) -> dict:
    """The three terms' means over the items that have text keywords (MiniLM embeds the full
    texts here; the keyword embeddings are the run's own)."""
    from metamodal.data import load_dataset
    from metamodal.data.loaders.embeddings import embedding_matrix, read_modality
    from metamodal.extract.encoders import Encoder, EncoderSpec

    ds = load_dataset(catalog, fmt)
    t = read_modality(out, "text_keywords")
    ok = np.asarray(t.column("present"))
    idx = np.asarray(t.column("idx"))[ok]
    words = [w for w, o in zip(t.column("labels").to_pylist(), ok, strict=True) if o]
    if not len(idx):
        return {"items": 0}
    texts, minilm = ds.modalities["text"].texts, Encoder(EncoderSpec("minilm", "text"))
    text_emb = np.concatenate([minilm.encode_texts([texts[i] for i in idx[s : s + 256]])
                               for s in range(0, len(idx), 256)])  # fmt: skip
    terms = reward_terms(embedding_matrix(t)[ok], text_emb, np.array([len(w.replace(",", " ").split()) for w in words]),
                         min(NEIGHBOURS, len(idx) - 1))  # fmt: skip
    return {"items": int(len(idx)), **{k: float(v.mean()) for k, v in terms.items()},
            "reward": float(reward(terms).mean())}  # fmt: skip
