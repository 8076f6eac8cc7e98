"""The retrieval side of serving: a faiss index over a trained model's item vectors, and the four
ways a request names what it wants — a known user, a history of items, a free text, an image.

Texts and images arrive encoded (``metamodal.serving.encoders``) and are searched against that
modality's item rows; the nearest items become the query's pseudo-history, so every answer comes
from the same collaborative index. A request names items and users by their catalogue ids;
unknown ids are a ``LookupError`` naming them. Everything here is a sub-millisecond faiss or
numpy call: the ingress runs it in-process rather than paying a handle hop for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metamodal.extract.shared_space import SHARED, shared_space
from metamodal.retrieval.index import IndexSpec, ItemIndex
from metamodal.serving.config import ServeConfig
from metamodal.serving.encoders import BadQuery
from metamodal.train.artifacts import load_run

PSEUDO_HISTORY = 5  # items nearest a text / image query that stand in for a history
RESCORE_SLACK = 8  # extra float32 candidates rescored in float64, so the pool's edge is exact


@dataclass
class Retrieved:
    user: int  # -1 without a known user
    history: np.ndarray  # item indices the query stands for
    pool: np.ndarray  # candidate item indices, best first
    scores: np.ndarray  # first-stage score per candidate
    cold: np.ndarray  # per candidate: the retriever never saw it interacted
    task: str  # warm_user | cold_user (the agent's task vocabulary)
    pool_ids: list[str]  # the candidates' catalogue ids


class RetrieverCore:
    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        run = load_run(cfg.retriever_run)
        self.ds = run.ds
        net = run.build()
        # float64 vectors rescore the index's float32 candidates: a pool's order is then the
        # one ``mma run`` evaluated (its retriever scores in float64, ties by item index)
        u, i = (t.detach().numpy().astype(np.float64) for t in net.vectors())
        self.users, self.items = u, i
        self.index = ItemIndex(i.astype(np.float32), IndexSpec(kind=cfg.index_kind))
        self.user_pos = {str(x): n for n, x in enumerate(self.ds.user_ids)}
        self.item_pos = {str(x): n for n, x in enumerate(self.ds.item_ids)}
        # every item of a user's training part, cold ones too (the retriever never saw those
        # interactions, but the user did)
        self.seen = self.ds.matrix(run.split.train).tocsr()
        self.cold_items = (
            run.miss.cold_items if run.miss is not None else np.zeros(self.ds.n_items, bool)
        )
        self._content: dict[str, ItemIndex] = {}
        self.shared = shared_space(self.ds, cfg.heads) if cfg.heads is not None else None

    # ids ---------------------------------------------------------------------------------
    def item_index(self, ids: list[str]) -> np.ndarray:
        missing = [x for x in ids if x not in self.item_pos]
        if missing:
            raise LookupError(f"unknown item id(s): {missing[:5]}")
        return np.array([self.item_pos[x] for x in ids], dtype=np.int64)

    def item_info(self, item_id: str) -> dict:
        """Catalogue facts of one item: metadata columns and which modalities it has."""
        (i,) = self.item_index([item_id])
        meta = {}
        if self.ds.item_meta is not None and i < len(self.ds.item_meta):
            row = self.ds.item_meta.iloc[int(i)]
            meta = {str(k): (v if isinstance(v, int | float | str | bool) else str(v))
                    for k, v in row.items() if v == v}  # fmt: skip
        mods = {name: bool(m.present[i]) for name, m in self.ds.modalities.items()}
        return {"item_id": item_id, "meta": meta, "modalities": mods,
                "cold": bool(self.cold_items[i])}  # fmt: skip

    # queries -----------------------------------------------------------------------------
    def retrieve(self, kind: str, value, n: int | None = None) -> Retrieved:
        n = n or self.cfg.pool_size
        if kind == "user_id":
            if value not in self.user_pos:
                raise LookupError(f"unknown user id: {value!r}")
            u = self.user_pos[value]
            seen = self.seen[u].indices if self.cfg.exclude_seen else np.array([], np.int64)
            return self._search(self.users[u], n, seen, u, np.sort(seen), "warm_user")
        if kind == "history":
            hist = np.unique(self.item_index(list(value)))
            return self._search(self.items[hist].mean(0), n, hist, -1, hist, "cold_user")
        if kind == "content":  # (modality, vector) from the query encoders
            hist = self.content_history(*value)
            return self._search(self.items[hist].mean(0), n, np.array([], np.int64), -1, hist,
                                "cold_user")  # fmt: skip
        raise BadQuery(f"unknown query kind {kind!r}")

    def _search(self, q, n, exclude, user, hist, task) -> Retrieved:
        k = min(self.ds.n_items, n + len(exclude) + RESCORE_SLACK)
        _, items = self.index.search(q[None, :].astype(np.float32), k)
        cand = items[0][(items[0] >= 0) & ~np.isin(items[0], exclude)]
        s = self.items[cand] @ q
        order = np.lexsort((cand, -s))[:n]  # by score, ties by item index
        pool, s = cand[order], s[order]
        ids = [str(self.ds.item_ids[i]) for i in pool]
        return Retrieved(user, np.asarray(hist, np.int64), pool, s, self.cold_items[pool], task,
                         ids)  # fmt: skip

    # cold start by content ---------------------------------------------------------------
    def content_history(self, modality: str, q: np.ndarray) -> np.ndarray:
        """The items nearest an encoded text / image query in that modality's feature space
        (``SHARED``: the heads' space, scored per modality so an image reaches text-only items
        too; ``SharedSpace.item_scores``): the query's pseudo-history."""
        if modality == SHARED and self.shared is not None:
            s = self.shared.item_scores(q)
            top = np.argsort(-s, kind="stable")[:PSEUDO_HISTORY]
            return np.sort(top[np.isfinite(s[top])])
        if getattr(self.ds.modalities.get(modality), "features", None) is None:
            raise BadQuery(f"this catalogue has no {modality!r} features")
        if modality not in self._content:
            mod = self.ds.modalities[modality]
            x = mod.features / np.maximum(np.linalg.norm(mod.features, axis=1, keepdims=True), 1e-12)
            rows = np.flatnonzero(mod.present)
            self._content[modality] = ItemIndex(x[rows], IndexSpec(kind="flat"), ids=rows)
        _, items = self._content[modality].search(np.asarray(q, np.float32).reshape(1, -1), PSEUDO_HISTORY)
        return np.sort(items[0][items[0] >= 0])

    def warm(self) -> None:
        """Every content index built at replica start, not on the first cold-start request."""
        for name, mod in self.ds.modalities.items():
            if getattr(mod, "features", None) is not None and mod.present.any():
                self.content_history(name, mod.features[np.flatnonzero(mod.present)[0]])
