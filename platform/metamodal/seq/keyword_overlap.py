"""``keyword_overlap``: ``keyword_llm``'s control, a reader without a language model.

It sees exactly what ``keyword_llm``'s prompt shows — the recent items' keyword lines, the
similar users' keywords and each candidate's line, under the same hidden modalities — and
scores a candidate by the idf-weighted count of its line's keywords that the context holds.
Ties (most candidates share nothing with the context) are broken at random, seeded, since the
protocols count a tie against the target. Where the LLM does no better than this, it is not
reading the keywords beyond word matching; where this is at chance too, the keyword lines
carry little next-item signal for any reader.
"""

from __future__ import annotations

import numpy as np

from metamodal.seq.llm_rec import RECENT, ItemKeywords, PromptMaker


def idf(kw: ItemKeywords, hidden: frozenset[str]) -> dict[str, float]:
    """log(items / items whose line holds the word), over every item's line."""
    n = len(kw.text)
    df: dict[str, int] = {}
    for i in range(n):
        for w in set(kw.shown(i, hidden)):
            df[w] = df.get(w, 0) + 1
    return {w: float(np.log(n / c)) for w, c in df.items()}


def overlap_scores(make: PromptMaker, users, hists, cands, hidden: frozenset[str], seed: int) -> np.ndarray:
    """[users, candidates]: Σ idf of a candidate line's words found in the user's context,
    plus a tie-breaking draw below any word's weight."""
    weight = idf(make.kw, hidden)
    rng = np.random.default_rng([seed, 23])
    out = np.zeros((len(users), len(cands[0])))
    for r, (u, h, c) in enumerate(zip(users, hists, cands, strict=True)):
        context = {w for i in h[-RECENT:] for w in make.kw.shown(int(i), hidden)}
        context |= set(make.collab(int(u), h, hidden))
        out[r] = [sum(weight.get(w, 0.0) for w in set(make.kw.shown(int(i), hidden)) if w in context)
                  for i in c]  # fmt: skip
    return out + rng.uniform(0.0, 1e-6, size=out.shape)
