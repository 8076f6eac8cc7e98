"""``keyword_llm`` as a tool MMA may route to (``mma run --set
'tools=[metamodal.seq.mma_tool:keyword_llm]'``): MMSRARec's prompt — the user's recent history
items as keyword lines, the keywords similar users' recent items share, the candidates as
lettered keyword lines — read by the LM from its next-token logits over the letters, one
forward pass per window of candidates (``llm_rank``'s read-out). It is trained per seed on MMA's
own fit episodes (next item, plus keyword reconstruction where the catalogue has text: the
sequential run's multi-task SFT), so nothing outside MMA's training part reaches it.

Masking goes through the episode's ``Evidence`` view: a group the episode does not observe hands
out none of its keywords, so a masked modality's keywords reach no line of the prompt. The
collaborative line is graph evidence — similar users are found with the retriever's vectors and
their interactions are read — so it is there only where ``graph`` is observed. Neighbours' items
come from the retriever's training part without cold items' interactions (the retriever never
saw those; a neighbour's cold item would name a cold target), in time order.
"""

from __future__ import annotations

import json

import numpy as np

from metamodal.agent.episodes import Episode
from metamodal.agent.evidence import Evidence, EvidenceStore
from metamodal.agent.extensions import ToolBuild, ToolContext
from metamodal.agent.llm_rank import WINDOW, LLMRanker, window_sizes
from metamodal.agent.tools import Tool, ToolResult, result_of, unavailable
from metamodal.data import Dataset, TextModality
from metamodal.data.missing import GRAPH
from metamodal.seq.llm_rec import (
    ANSWER,
    NEIGHBOURS,
    RECENT,
    ItemKeywords,
    collab_words,
    prompt,
    reconstruction_rows,
)
from metamodal.seq.sequences import in_time_order

NAME = "keyword_llm"
GROUPS = ("text", "image")
SHOWN = frozenset()  # the view already withheld what is masked: nothing more to hide
HIDE_P = 0.3  # reconstruction rows: P(visual keywords hidden), as the sequential run trains


class _NoWords:
    """Keywords of a group the episode does not observe (or the catalogue lacks): none."""

    def __getitem__(self, i: int) -> list[str]:
        return []


NO_WORDS = _NoWords()


def observed_keywords(ev: Evidence) -> ItemKeywords | None:
    """The keywords of the observed groups only; None when no observed group has any."""
    got = {g: kw for g in GROUPS if ev.observed(g) and (kw := ev.keywords(g)) is not None}
    return ItemKeywords(got.get("text", NO_WORDS), got.get("image", NO_WORDS)) if got else None  # type: ignore[arg-type]


class Collaborative:
    """Similar users by cosine of the retriever's vectors (faiss), and every user's training
    items in time order (the collaborative line, and the order of an episode's history)."""

    def __init__(self, ds: Dataset, train: np.ndarray, users: np.ndarray, items: np.ndarray,
                 k: int = NEIGHBOURS) -> None:  # fmt: skip
        """``train``: the interactions the retriever was trained on; ``users``/``items``: its vectors."""
        import faiss

        self.users = np.ascontiguousarray(users, dtype=np.float32)
        self.items = np.asarray(items, dtype=np.float32)
        unit = self.users / np.maximum(np.linalg.norm(self.users, axis=1, keepdims=True), 1e-12)
        self.index = faiss.IndexFlatIP(unit.shape[1])
        self.index.add(unit)
        self.seqs = in_time_order(ds, train)
        self.k = k

    @classmethod
    def of_run(cls, run) -> Collaborative:
        """From the retriever's trained run (cold items' interactions left out, as it trained)."""
        users, items = run.build().numpy_vectors()
        train = run.miss.train_indices(run.ds, run.split) if run.miss is not None else run.split.train
        return cls(run.ds, train, users, items)

    def ordered(self, ep: Episode) -> np.ndarray:
        """The episode's history in the user's training order (unknown items first)."""
        pos = {int(i): r for r, i in enumerate(self.seqs[ep.user])}
        return np.array(sorted(ep.history.tolist(), key=lambda i: pos.get(int(i), -1)), dtype=np.int64)

    def neighbour_items(self, ep: Episode) -> list[np.ndarray]:
        """The training items of the ``k`` users nearest the episode's user — by the user's own
        vector, or for a cold user by the mean of its few history items' vectors (its own vector
        was trained on the history the episode withholds); the user itself never."""
        if ep.task == "cold_user":
            if not len(ep.history):
                return []
            q = self.items[ep.history].mean(0)
        else:
            q = self.users[ep.user]
        q = (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)[None]
        _, nn = self.index.search(q, self.k + 1)
        return [self.seqs[int(v)] for v in nn[0] if v >= 0 and int(v) != ep.user][: self.k]


def episode_prompts(ev: Evidence, coll: Collaborative) -> tuple[ItemKeywords, list[str]] | None:
    """(the observed keywords, one prompt per window of candidates); None when no observed
    group has keywords."""
    kw = observed_keywords(ev)
    if kw is None:
        return None
    ep = ev.ep
    hist = coll.ordered(ep)
    own = [w for i in hist[-RECENT:] for w in kw.of(int(i), SHOWN)]
    near = coll.neighbour_items(ep) if ev.observed(GRAPH) else []
    collab = collab_words(near, kw, own, SHOWN)
    if not own and not collab:
        return kw, []
    return kw, [prompt(hist, collab, ep.pool[s : s + WINDOW], kw, SHOWN) for s in range(0, len(ep.pool), WINDOW)]


def keyword_llm_tool(ranker: LLMRanker, coll: Collaborative) -> Tool:
    """Candidates without keywords in the observed groups are unscored (NaN)."""

    def run(ev: Evidence) -> ToolResult:
        got = episode_prompts(ev, coll)
        if got is None:
            return unavailable(NAME)
        kw, prompts = got
        if not prompts:
            return result_of(NAME, None, " (no keyword in the history or its neighbours)")
        s = ranker.scores(prompts, window_sizes(len(ev.ep.pool)))
        s[[not kw.of(int(i), SHOWN) for i in ev.ep.pool]] = np.nan
        return result_of(NAME, s)

    return run


def next_item_rows(store: EvidenceStore, coll: Collaborative, episodes: list[Episode], limit: int,
                   seed: int) -> tuple[list[str], list[int], list[int]]:  # fmt: skip
    """(prompts, target positions, pool sizes) of target-positive fit episodes whose pool fits
    one window and whose target has observed keywords: at most ``limit``, drawn with ``seed``."""
    rows = []
    for ep in episodes:
        if ep.pool_kind != "target_positive" or len(ep.pool) > WINDOW:
            continue
        got = episode_prompts(store.view(ep), coll)
        t = int(np.flatnonzero(ep.labels)[0])
        if got is None or not got[1] or not got[0].of(int(ep.pool[t]), SHOWN):
            continue
        rows.append((got[1][0], t, len(ep.pool)))
    keep = np.sort(np.random.default_rng([seed, 21]).permutation(len(rows))[:limit])
    if not len(keep):
        raise ValueError(f"{NAME}: no fit episode with observed keywords and a target that has them")
    return [rows[i][0] for i in keep], [rows[i][1] for i in keep], [rows[i][2] for i in keep]


def catalogue_text(ds) -> list[str | None] | None:
    mod = next((m for m in ds.modalities.values() if isinstance(m, TextModality) and m.kind == "text"), None)
    return None if mod is None else [t if p else None for t, p in zip(mod.texts, mod.present, strict=True)]


def training_rows(ctx: ToolContext, coll: Collaborative):
    """Next-item rows from the fit episodes, and a third as many keyword-reconstruction rows
    where the catalogue has text: (prompts, one-hot rewards [n, WINDOW], sizes, rows by task)."""
    seed = ctx.policy.seed  # the factory checked it is there before training
    n_rec = ctx.rows // 4
    prompts, targets, sizes = next_item_rows(ctx.store, coll, ctx.fit or [], ctx.rows - n_rec, seed)
    r = np.zeros((len(prompts), WINDOW), np.float32)
    r[np.arange(len(prompts)), targets] = 1.0
    parts = {"next_item": (prompts, r, np.asarray(sizes))}
    texts = catalogue_text(ctx.run.ds)
    words = ctx.store.keywords
    if n_rec and texts is not None and words.get("text") is not None:
        kw = ItemKeywords(words["text"], words.get("image") or NO_WORDS)  # type: ignore[arg-type]
        parts["reconstruct"] = reconstruction_rows(kw, texts, n_rec, WINDOW, HIDE_P, seed)
    prompts = [p for part in parts.values() for p in part[0]]
    return (prompts, np.concatenate([p[1] for p in parts.values()]),
            np.concatenate([p[2] for p in parts.values()]), {k: len(v[0]) for k, v in parts.items()})  # fmt: skip


def keyword_llm(ctx: ToolContext) -> ToolBuild:
    """The factory: trains under ``ctx.out`` (or loads what is there when ``ctx.fit`` is None,
    or ``ctx.reuse`` finds a trained adapter)."""
    from metamodal.agent.menu_policy import train_menu_policy

    coll = Collaborative.of_run(ctx.run)
    f = ctx.out / "summary.json"
    if ctx.fit is None or (ctx.reuse and f.is_file() and (ctx.out / "adapter").is_dir()):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: {NAME} was never trained there")
        summary = json.loads(f.read_text())
    else:
        if ctx.policy is None:
            raise ValueError(f"{NAME}: training needs the seed's policy settings")
        prompts, rewards, sizes, by_task = training_rows(ctx, coll)
        pcfg = ctx.policy.model_copy(update={"answer": ANSWER, "depth": None})  # reads text: the whole LM
        summary = train_menu_policy(prompts, rewards, sizes, rewards, ctx.out, pcfg, reward_scale=1.0,
                                    record={"rows_by_task": by_task})  # fmt: skip
    return ToolBuild({NAME: keyword_llm_tool(LLMRanker(summary), coll)}, summary)
