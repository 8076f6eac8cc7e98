"""``keyword_llm``: the keyword-RAG LLM sequential recommender (MMSRARec). The prompt holds the
user's recent items as keyword lines, keywords that the user's nearest neighbours' recent items
share (the collaborative part, retrieved with faiss over the ID-only SASRec's user states), and
the candidates as lettered keyword lines; the LM scores them from its next-token logits over the
letters in one forward pass (LlamaRec's verbalizer: no free-form generation at evaluation).

Keywords come from ``metamodal keywords``: the LLM's keywords of an item's text and the image
classifier's classes as visual keywords. A condition that hides a modality hides its keywords
everywhere in the prompt — items, history and neighbours alike — so nothing masked reaches it.

Training reuses the menu trainer (``agent.menu_policy``: LoRA on the top layers over a cached
frozen trunk, Ray Train + DeepSpeed ZeRO-2): SFT on the target's letter, then the exact
expected-reward stage with a KL to it. Two tasks share that read-out (multi-task SFT): the
next item, on prompts built from the users' training sequences (the last training item is the
target) with modalities hidden at random, as in training the multimodal SASRec; and keyword
reconstruction, which shows an item's own text above lettered keyword lines and asks which
line it became — grounding the keyword lines the next-item prompts are made of. On full
ranking it reranks SASRec's top candidates.

The candidates come in SASRec's order by default (``llm.candidate_order``), as LlamaRec reads its
retriever's top in the retriever's order: the reader starts from a strong ranking and learns
when the keywords should overturn it. Its next-item rows then target each user's validation
item, which SASRec never trained on (on its training items SASRec's order would be too good).
``shuffled`` keeps the first design, where keywords alone must find the target.

``pointwise`` (``llm.mode``) reads one prompt per candidate instead — the same context, then that
candidate's line, answered ``A`` (next) or ``B`` (not next), its score log p(A) — trained on the
target and one drawn negative per row (reconstruction alike: the item's own line and another's).
A user's prompts share everything before the candidate's line, which a read-out runs once
(``menu_net.SHARED``). On a GPU the listwise reader of ``llm_rank`` learnt only a preference
among letters, and a pointwise one read the same keywords above chance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metamodal.agent.menu_net import LETTERS, SHARED
from metamodal.seq.sequences import Sequences

ANSWER = "\nanswer:"
NEXT_TASK = "task: the user's next item"
RECONSTRUCT_TASK = "task: which line summarises this item"
NEXT_KEY = "A: next\nB: not next"  # pointwise answers
RECONSTRUCT_KEY = "A: summarises it\nB: another item"
POINT_LETTERS = 2
TEXT_WORDS = 24  # of the item's own text in a reconstruction prompt
RECENT = 5  # history items shown
ITEM_WORDS = 4  # keywords per item line
COLLAB_WORDS = 8
NEIGHBOURS = 10

FirstStage = Callable[[list[np.ndarray]], np.ndarray]  # histories → [len, n_items] scores, history -inf


@dataclass
class ItemKeywords:
    """Per item: its text keywords and its visual keywords (empty lists where none)."""

    text: list[list[str]]
    image: list[list[str]]

    @classmethod
    def load(cls, keywords_dir: str | Path, ds) -> ItemKeywords:
        from metamodal.data.loaders.embeddings import load_embeddings

        mods = load_embeddings(keywords_dir, ds)

        def words(kind: str) -> list[list[str]]:
            m = next((m for n, m in mods.items() if n.endswith("_labels") and m.kind == kind), None)
            if m is None:
                return [[] for _ in range(ds.n_items)]
            return [[w.strip() for w in t.split(",") if w.strip()] if t else [] for t in m.texts]

        return cls(words("text"), words("image"))

    def of(self, i: int, hidden: frozenset[str]) -> list[str]:
        out = [] if "text" in hidden else list(self.text[i])
        out += [] if "image" in hidden else [w for w in self.image[i] if w not in out]
        return out

    def shown(self, i: int, hidden: frozenset[str]) -> list[str]:
        """The keywords item ``i``'s prompt line shows."""
        return self.of(i, hidden)[:ITEM_WORDS]

    def line(self, i: int, hidden: frozenset[str]) -> str:
        return " ".join(self.shown(i, hidden)) or "-"


class Neighbours:
    """Each user's nearest users by the cosine of their vectors (faiss, inner product)."""

    def __init__(self, user_vectors: np.ndarray, k: int = NEIGHBOURS) -> None:
        import faiss

        x = np.ascontiguousarray(user_vectors, dtype=np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        _, nn = index.search(x, k + 1)
        self.of = [row[(row != u) & (row >= 0)][:k] for u, row in enumerate(nn)]


def collab_words(neighbour_items: Iterable[np.ndarray], kw: ItemKeywords, own: list[str],
                 hidden: frozenset[str]) -> list[str]:  # fmt: skip
    """Keywords the neighbours' recent training items share (``neighbour_items``: each
    neighbour's training items in time order), the user's own left out."""
    c = Counter(w for items in neighbour_items for i in items[-RECENT:] for w in set(kw.of(int(i), hidden)))
    mine = set(own)
    return [w for w, _ in c.most_common(COLLAB_WORDS + len(mine)) if w not in mine][:COLLAB_WORDS]


def context_lines(history: np.ndarray, collab: list[str], kw: ItemKeywords, hidden: frozenset[str]) -> list[str]:
    recent = [kw.line(int(i), hidden) for i in history[-RECENT:]]
    return ["recent: " + "; ".join(recent), "similar users: " + (" ".join(collab) or "-")]


def prompt(history: np.ndarray, collab: list[str], candidates: np.ndarray, kw: ItemKeywords,
           hidden: frozenset[str]) -> str:  # fmt: skip
    lines = [NEXT_TASK, *context_lines(history, collab, kw, hidden)]
    return "\n".join(lines + candidate_lines(candidates, kw, hidden))


def point_prompts(history: np.ndarray, collab: list[str], candidates: np.ndarray, kw: ItemKeywords,
                  hidden: frozenset[str]) -> list[str]:  # fmt: skip
    """One prompt per candidate; all share the context before ``SHARED``."""
    head = "\n".join([NEXT_TASK, NEXT_KEY, *context_lines(history, collab, kw, hidden), "item:"])
    return [f"{head}{SHARED} {kw.line(int(i), hidden)}" for i in candidates]


def candidate_lines(candidates: np.ndarray, kw: ItemKeywords, hidden: frozenset[str]) -> list[str]:
    return [f"{c}: {kw.line(int(i), hidden)}" for c, i in zip(LETTERS, candidates, strict=False)]


@dataclass
class PromptMaker:
    seqs: Sequences
    kw: ItemKeywords
    nb: Neighbours

    def __call__(self, u: int, history: np.ndarray, candidates: np.ndarray, hidden: frozenset[str]) -> str:
        return prompt(history, self.collab(u, history, hidden), candidates, self.kw, hidden)

    def points(self, u: int, history: np.ndarray, candidates: np.ndarray, hidden: frozenset[str]) -> list[str]:
        return point_prompts(history, self.collab(u, history, hidden), candidates, self.kw, hidden)

    def collab(self, u: int, history: np.ndarray, hidden: frozenset[str]) -> list[str]:
        own = [w for i in history[-RECENT:] for w in self.kw.of(int(i), hidden)]
        near = (self.seqs.train[int(v)] for v in self.nb.of[u])
        return collab_words(near, self.kw, own, hidden)


def training_rows(make: PromptMaker, n_rows: int, n_candidates: int, hide_p: float, seed: int,
                  mode: str = "listwise", first_stage: FirstStage | None = None):  # fmt: skip
    """(prompts, one-hot rewards [n, letters], sizes) among random unseen items; pointwise the
    target's prompt (A) and one of those negatives' (B). Without ``first_stage`` the target is a
    user's last training item after the items before it, the candidates shuffled: the reader
    must find it from keywords alone. With it, the target is the user's validation item after
    the training items, the candidates in the first stage's order — the order evaluation shows
    them in, as in LlamaRec — so the reader learns when to depart from that order; the first
    stage never trained on these targets, so its order is as fallible here as on test."""
    seqs = make.seqs
    rng = np.random.default_rng([seed, 18])
    valid = first_stage is not None
    users = seqs.users("valid").tolist() if valid else [u for u in range(len(seqs.train)) if len(seqs.train[u]) >= 2]
    if not users:
        raise ValueError("keyword_llm: no user has " + ("a validation item" if valid else "two training items"))
    pick = [int(u) for u in rng.choice(users, size=min(n_rows, len(users)), replace=False)]
    hists = [seqs.train[u] if valid else seqs.train[u][:-1] for u in pick]
    goal = [int(seqs.target["valid"][u]) if valid else int(seqs.train[u][-1]) for u in pick]
    order = first_stage(hists) if valid and mode == "listwise" else None  # pointwise rows show no order
    prompts, targets = [], []
    for r, (u, hist, t) in enumerate(zip(pick, hists, goal, strict=True)):
        seen = set(seqs.seen[u].tolist())
        neg = [int(i) for i in rng.permutation(seqs.n_items) if int(i) not in seen][: n_candidates - 1]
        cands = rng.permutation(np.array([t, *neg]))
        if order is not None:
            cands = in_order(cands, order[r])
        hidden = frozenset(k for k in ("text", "image") if rng.random() < hide_p)
        if mode == "pointwise":
            prompts += make.points(u, hist, np.array([t, neg[0]]), hidden)
            targets += [0, 1]
            continue
        prompts.append(make(u, hist, cands, hidden))
        targets.append(int(np.flatnonzero(cands == t)[0]))
    return menu_rows(prompts, targets, POINT_LETTERS if mode == "pointwise" else n_candidates)


def in_order(cands: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``cands`` by the first stage's ``scores`` (over all items), best first; ties keep the
    order they came in (a random one)."""
    return cands[np.argsort(-scores[cands], kind="stable")]


def reconstruction_rows(kw: ItemKeywords, texts: list[str | None], n_rows: int, n_candidates: int,
                        hide_p: float, seed: int, mode: str = "listwise"):  # fmt: skip
    """Keyword reconstruction rows, as ``training_rows``: an item's text (its first
    ``TEXT_WORDS`` words) above its keyword line among those of random other items with text
    keywords (so no line is empty); pointwise its own line (A) and one of the others' (B). The
    text is shown, so only visual keywords are hidden."""
    rng = np.random.default_rng([seed, 19])
    has = np.array([bool(t) and bool(kw.text[i]) for i, t in enumerate(texts)])
    pool = np.flatnonzero(has)
    if len(pool) < n_candidates:
        raise ValueError(f"keyword_llm: {len(pool)} items have text and text keywords; "
                         f"reconstruction needs at least {n_candidates}")  # fmt: skip
    prompts, targets = [], []
    for i in rng.choice(pool, size=min(n_rows, len(pool)), replace=False):
        others = rng.choice(pool[pool != i], size=n_candidates - 1, replace=False)
        cands = rng.permutation(np.array([int(i), *others.tolist()]))
        hidden = frozenset(["image"]) if rng.random() < hide_p else frozenset()
        words = " ".join(str(texts[int(i)]).split()[:TEXT_WORDS])
        if mode == "pointwise":
            head = "\n".join([RECONSTRUCT_TASK, RECONSTRUCT_KEY, "text: " + words, "line:"])
            prompts += [f"{head}{SHARED} {kw.line(int(j), hidden)}" for j in (i, others[0])]
            targets += [0, 1]
            continue
        prompts.append("\n".join([RECONSTRUCT_TASK, "text: " + words, *candidate_lines(cands, kw, hidden)]))
        targets.append(int(np.flatnonzero(cands == i)[0]))
    return menu_rows(prompts, targets, POINT_LETTERS if mode == "pointwise" else n_candidates)


def menu_rows(prompts: list[str], targets: list[int], n_candidates: int):
    """What the menu trainer takes: (prompts, one-hot rewards [n, letters], menu sizes)."""
    r = np.zeros((len(prompts), n_candidates), np.float32)
    r[np.arange(len(prompts)), targets] = 1.0
    return prompts, r, np.full(len(prompts), n_candidates)


def hidden_kinds(condition: str) -> frozenset[str]:
    """``no_text`` → {text}; ``full`` → {}."""
    return frozenset([condition[3:]]) if condition.startswith("no_") else frozenset()


def llm_reader(net, make: PromptMaker, mode: str):
    """``read(users, hists, cands, hidden)`` → [users, candidates]: the letters'
    log-probabilities (listwise) or each candidate's log p(next) (pointwise)."""

    def read(users, hists, cands, hidden: frozenset[str]) -> np.ndarray:
        rows = list(zip(users, hists, cands, strict=True))
        n = len(cands[0])
        if mode == "pointwise":
            ps = [p for u, h, c in rows for p in make.points(int(u), h, c, hidden)]
            p = net.probs(ps, [POINT_LETTERS] * len(ps), what="keyword_llm")[:, 0]
            return np.log(p + 1e-12).reshape(len(rows), n)
        ps = [make(int(u), h, c, hidden) for u, h, c in rows]
        return np.log(net.probs(ps, [n] * len(ps), what="keyword_llm")[:, :n] + 1e-12)

    return read


def evaluate_reader(read, seqs: Sequences, users: np.ndarray, negatives: np.ndarray, condition: str,
                    first_stage: np.ndarray, seed: int, ordered: bool = False) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Per-user metrics of a keyword reader (``llm_reader``, or its control) on both
    protocols: on ``sampled`` it reads the target and the user's negatives in a shuffled order
    (``ordered``: then sorted by the first stage); on ``full`` it reorders the first stage's top
    ``1 + negatives`` in that order (``first_stage``: [users, n_items] scores, history already
    -inf)."""
    from metamodal.eval.sequential import full_metrics, sampled_metrics

    hidden, n = hidden_kinds(condition), 1 + negatives.shape[1]
    rng = np.random.default_rng([seed, 11])
    hist = [seqs.history("test", int(u)) for u in users]
    target = seqs.target["test"][users]
    cands = [np.array([t, *neg])[rng.permutation(n)] for t, neg in zip(target, negatives, strict=True)]
    if ordered:
        cands = [in_order(c, s) for c, s in zip(cands, first_stage, strict=True)]
    lp = read(users, hist, cands, hidden)
    at = np.array([int(np.flatnonzero(c == t)[0]) for c, t in zip(cands, target, strict=True)])  # where the target went
    pos = lp[np.arange(len(users)), at]
    neg = np.stack([np.delete(row, a) for row, a in zip(lp, at, strict=True)])
    top = np.argsort(-first_stage, axis=1, kind="stable")[:, :n]
    lt = read(users, hist, list(top), hidden)
    full = np.array(first_stage, dtype=np.float64, copy=True)
    np.put_along_axis(full, top, 1e6 + lt, axis=1)  # the reordered head stays above the rest
    return {"sampled": sampled_metrics(pos, neg), "full": full_metrics(full, target, hist)}
