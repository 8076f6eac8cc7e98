"""``keyword_llm`` as a tool of MMA, added by path (``agent.extensions``): its prompts hold only
the keywords of the groups an episode observes, its collaborative line appears only where the
graph is observed and never reads the user itself, a cold user's neighbours come from its few
history items, and a misspelt factory path fails when the configuration is read. (Trained on
Ray Train and served as measured: ``test_serve.py``'s MMA run routes to it.)"""

from __future__ import annotations

import numpy as np
import pytest

from metamodal.seq.llm_rec import NEXT_TASK
from metamodal.seq.mma_tool import Collaborative, episode_prompts, keyword_llm_tool, next_item_rows

FULL = ("graph", "text", "image")
PATTERNS = [("graph",), ("text",), ("image",), ("graph", "text"), ("graph", "image"), ("text", "image"), FULL]


@pytest.fixture(scope="module")
def coll(world) -> Collaborative:
    """Neighbours by a truncated SVD of the training matrix (cold items left out, as the
    retriever trains)."""
    ds, split, miss, _, store = world
    train = miss.train_indices(ds, split)
    u, s, _ = np.linalg.svd(ds.matrix(train).toarray(), full_matrices=False)
    return Collaborative(ds, train, u[:, :8] * s[:8], store.graph_items, k=5)


class Recording:
    """Keeps every prompt the tool asks to score; scores them all alike. What is under test is
    what reaches the prompt, not the LM (the trained one is exercised in ``test_serve.py``)."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def scores(self, prompts: list[str], sizes: list[int]) -> np.ndarray:
        self.prompts += prompts
        return np.zeros(sum(sizes))


def words_of(prompts: list[str], head: str) -> set[str]:
    """The words of every line starting with ``head`` (letters: candidate lines)."""
    out = set()
    for p in prompts:
        for line in p.splitlines():
            key, _, rest = line.partition(": ")
            if key == head or (head == "candidates" and len(key) == 1):
                out |= {w for part in rest.split("; ") for w in part.split()} - {"-"}
    return out


@pytest.mark.parametrize("pattern", PATTERNS)
def test_prompts_hold_only_observed_keywords_and_graph_alone_brings_neighbours(world, visual_store, coll,
                                                                               pattern) -> None:  # fmt: skip
    _, _, _, b, _ = world
    base = b.target_positive_part("test", "warm_user", FULL, limit=3, seed=1)
    for ep in (b.under(e, pattern) for e in base):
        rec = Recording()
        res = keyword_llm_tool(rec, coll)(visual_store.view(ep))
        if not {"text", "image"} & set(pattern):
            assert res.status == "unavailable" and not rec.prompts
            continue
        assert rec.prompts and all(p.startswith(NEXT_TASK) for p in rec.prompts)
        observed = [visual_store.keywords[g] for g in ("text", "image") if g in pattern]
        near = coll.neighbour_items(ep)
        items = [*ep.history, *ep.pool, *(i for n in near for i in n)]
        allowed = {w for kw in observed for i in items for w in kw[int(i)]}
        words = words_of(rec.prompts, "recent") | words_of(rec.prompts, "candidates") | words_of(
            rec.prompts, "similar users")  # fmt: skip
        assert words and words <= allowed
        assert ("text" in pattern) == any(not w.startswith("vis") for w in words)
        visual = any(w.startswith("vis") for w in words)
        # with text observed too, an item's text keywords come first and fill its shown words:
        # visual ones appear only for items without text, which a pool need not hold
        if "image" not in pattern:
            assert not visual
        elif "text" not in pattern:
            assert visual
        collab = words_of(rec.prompts, "similar users")
        assert bool(collab) <= ("graph" in pattern)  # the neighbours are graph evidence
        unscored = [not any(kw[int(i)] for kw in observed) for i in ep.pool]
        assert np.isnan(res.scores[unscored]).all() and not np.isnan(res.scores[~np.array(unscored)]).any()


def test_neighbours_never_hold_the_user_and_a_cold_user_is_found_by_its_few_items(world, coll) -> None:
    _, _, _, b, _ = world
    warm = b.target_positive_part("test", "warm_user", FULL, limit=5, seed=2)
    cold = b.target_positive_part("test", "cold_user", FULL, limit=5, seed=2)
    assert warm and cold
    for ep in warm + cold:
        near = coll.neighbour_items(ep)
        assert len(near) == coll.k and not any(n is coll.seqs[ep.user] for n in near)
    ep = cold[0]
    before = coll.neighbour_items(ep)
    saved = coll.users[ep.user].copy()
    coll.users[ep.user] = -saved  # the cold user's own vector is never read
    try:
        assert all(a is c for a, c in zip(coll.neighbour_items(ep), before, strict=True))
    finally:
        coll.users[ep.user] = saved


def test_training_rows_are_one_window_with_the_target_among_them(world, coll) -> None:
    _, _, _, b, store = world
    eps = [b.under(e, p) for p in PATTERNS for e in b.target_positive_part("valid", "warm_user", FULL, 20, seed=0)]
    prompts, targets, sizes = next_item_rows(store, coll, eps, 30, seed=0)
    assert 0 < len(prompts) <= 30 and all(0 <= t < n for t, n in zip(targets, sizes, strict=True))
    assert all(p.startswith(NEXT_TASK) for p in prompts)
    got = episode_prompts(store.view(eps[-1]), coll)  # everything observed
    assert got is not None and len(got[1]) == 1  # a 12-item pool fits one window


def test_a_misspelt_factory_path_fails_when_the_configuration_is_read() -> None:
    from metamodal.agent.config import load_mma_config

    assert load_mma_config(["tools=[metamodal.seq.mma_tool:keyword_llm]"]).tools == ["metamodal.seq.mma_tool:keyword_llm"]
    for bad, says in (("metamodal.seq.mma_tool:nope", "nope"), ("no_such_module:f", "no_such_module"),
                      ("metamodal.seq.mma_tool", "package.module:function")):  # fmt: skip
        with pytest.raises(ValueError, match=says):
            load_mma_config([f"tools=[{bad}]"])
