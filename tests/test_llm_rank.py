"""``llm_rank``, the LLM tool, in both modes: a masked modality's text never reaches its prompt,
its prompts hold only the episode's own items' keywords, and it trains (SFT, then the
expected-reward stage) on Ray Train — pointwise one prompt per candidate, listwise scoring pools
longer than its letter window (a random-init tiny LM: the machinery, not the quality)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from metamodal.agent.llm_rank import (
    POINT_LETTERS,
    WINDOW,
    LLMRanker,
    episode_prompts,
    llm_rank_tool,
    train_llm_rank,
    training_rows,
)
from metamodal.agent.menu_net import SHARED, MenuPolicyConfig

FULL = ("graph", "text", "image")


def train_tiny(world, tiny_llm, tmp_path_factory, mode: str) -> LLMRanker:
    _, _, _, b, store = world
    eps = b.target_positive_part("valid", "warm_user", FULL, limit=40, seed=0)
    cfg = MenuPolicyConfig(model=str(tiny_llm), train_layers=1, lora_r=4, batch=8, workers=1,
                           bc_epochs=1, rl_epochs=1)  # fmt: skip
    return train_llm_rank(store, eps, cfg, tmp_path_factory.mktemp(f"llm_rank_{mode}"), 32,
                          reuse=False, mode=mode)  # fmt: skip


@pytest.fixture(scope="module")
def listwise(world, tiny_llm, ray_session, tmp_path_factory) -> LLMRanker:
    return train_tiny(world, tiny_llm, tmp_path_factory, "listwise")


@pytest.fixture(scope="module")
def pointwise(world, tiny_llm, ray_session, tmp_path_factory) -> LLMRanker:
    return train_tiny(world, tiny_llm, tmp_path_factory, "pointwise")


@pytest.fixture(params=["pointwise", "listwise"])
def ranker(request) -> LLMRanker:
    return request.getfixturevalue(request.param)


class Recording:
    """The real ranker, with every prompt it is asked to score kept."""

    def __init__(self, ranker: LLMRanker) -> None:
        self.ranker, self.prompts, self.mode = ranker, [], ranker.mode

    def scores(self, prompts: list[str], sizes: list[int]) -> np.ndarray:
        self.prompts += prompts
        return self.ranker.scores(prompts, sizes)


@pytest.mark.parametrize("pattern", [("graph",), ("image",), ("graph", "image"), ("text",), FULL])
def test_masked_text_never_reaches_a_prompt(world, ranker, pattern) -> None:
    _, _, _, b, store = world
    ep = b.under(b.target_positive_part("test", "warm_user", FULL, limit=1, seed=1)[0], pattern)
    rec = Recording(ranker)
    res = llm_rank_tool(rec)(store.view(ep))
    if "text" not in pattern:
        assert res.status == "unavailable" and not rec.prompts
        assert episode_prompts(store.view(ep), ranker.mode) is None
        return
    assert res.usable and len(res.scores) == len(ep.pool)
    assert len(rec.prompts) == (len(ep.pool) if ranker.mode == "pointwise" else 1)
    kw = store.keywords["text"]
    allowed = {w for i in (*ep.history, *ep.pool) for w in kw[int(i)]}
    words = prompt_words(rec.prompts)
    assert words and words - {"-"} <= allowed  # only this episode's own items' keywords
    assert np.isnan(res.scores[[not kw[int(i)] for i in ep.pool]]).all()


def prompt_words(prompts: list[str]) -> set[str]:
    """Every word the prompts show of items (the pointwise answer lines are the template's)."""
    template = {"A: match", "B: no match"}
    return {w for p in prompts for line in p.replace(SHARED, "").splitlines() if line not in template
            for w in line.split(": ", 1)[1].split()}  # fmt: skip


@pytest.mark.parametrize("pattern", [("image",), ("graph", "image"), ("graph",), ("graph", "text"), FULL])
def test_visual_keywords_where_only_the_image_survives(world, ranker, visual_store, pattern) -> None:
    """Text first; the image's visual keywords where text is masked; neither where both are."""
    _, _, _, b, _ = world
    ep = b.under(b.target_positive_part("test", "warm_user", FULL, limit=1, seed=1)[0], pattern)
    rec = Recording(ranker)
    res = llm_rank_tool(rec)(visual_store.view(ep))
    words = prompt_words(rec.prompts) - {"-"}
    visual = {w for w in words if w.startswith("vis")}
    if "text" in pattern:
        assert res.usable and words and not visual and "liked (text): " in rec.prompts[0]
    elif "image" in pattern:
        kw = visual_store.keywords["image"]
        assert res.usable and "liked (image): " in rec.prompts[0]
        assert words and words <= {w for i in (*ep.history, *ep.pool) for w in kw[int(i)]}
    else:
        assert res.status == "unavailable" and not rec.prompts


def test_listwise_trains_on_ray_train_and_scores_pools_longer_than_its_window(world, listwise) -> None:
    _, _, _, b, store = world
    summary = listwise.summary
    d = Path(summary["adapter"]).parent
    stages = {json.loads(x)["stage"] for x in (d / "metrics.jsonl").read_text().splitlines()}
    assert {"cache", "bc", "rl", "done"} <= stages and summary["rows"] == 32
    assert json.loads((d / "summary.json").read_text())["mode"] == "listwise"
    prompts, rewards, sizes = training_rows(store, b.target_positive_part(
        "valid", "warm_user", FULL, limit=40, seed=0), 32, 0, "listwise")  # fmt: skip
    assert (rewards.sum(1) == 1).all() and (rewards.argmax(1) < sizes).all()
    assert all(p.startswith("liked (text): ") for p in prompts)
    ep = b.fixed(int(b.target_positive_part("test", "warm_user", FULL, limit=1, seed=1)[0].user),
                 "test", FULL)  # fmt: skip
    more = np.setdiff1d(np.arange(store.graph_items.shape[0]), ep.pool)[:WINDOW + 7 - len(ep.pool)]
    pool = np.concatenate([ep.pool, more])
    long = replace(ep, pool=pool, cold=np.zeros(len(pool), bool), first_stage=np.zeros(len(pool)))
    group, prompts, sizes = episode_prompts(store.view(long), "listwise")
    assert group == "text" and len(prompts) == 2 and sizes == [WINDOW, 7]
    s = listwise.scores(prompts, sizes)
    assert s.shape == (len(long.pool),) and np.isfinite(s).all() and (s <= 0).all()


def test_pointwise_trains_on_the_target_and_a_negative_and_scores_each_candidate(world, pointwise) -> None:
    """Two rows per episode — the target answered A, one drawn negative (with keywords) B —
    and each candidate's score is log p(A) of its own prompt, whatever else is in the pool."""
    _, _, _, b, store = world
    eps = b.target_positive_part("valid", "warm_user", FULL, limit=40, seed=0)
    prompts, rewards, sizes = training_rows(store, eps, 32, 0, "pointwise")
    assert rewards.shape == (len(prompts), POINT_LETTERS) and (sizes == POINT_LETTERS).all()
    assert 32 < len(prompts) <= 64 and rewards[:, 0].sum() == 32 and (rewards.sum(1) == 1).all()
    summary = pointwise.summary
    assert summary["mode"] == "pointwise" and summary["rows"] == len(prompts)
    ep = b.target_positive_part("test", "warm_user", FULL, limit=1, seed=1)[0]
    group, ps, sz = episode_prompts(store.view(ep), "pointwise")
    assert len(ps) == len(ep.pool) and sz == [POINT_LETTERS] * len(ep.pool)
    assert len({p.rpartition(SHARED)[0] for p in ps}) == 1  # the pool's prompts share one prefix
    s = pointwise.scores(ps, sz)
    assert s.shape == (len(ep.pool),) and np.isfinite(s).all() and (s <= 0).all()
    # a candidate's score is its own prompt's: reversing the pool reverses the scores (read
    # afresh, not from the remembered read-outs)
    pointwise.net.forget_read_outs()
    np.testing.assert_allclose(pointwise.scores(ps[::-1], sz), s[::-1], rtol=1e-5, atol=1e-6)
    loaded = LLMRanker(json.loads((Path(summary["adapter"]).parent / "summary.json").read_text()))
    assert loaded.mode == "pointwise"
    np.testing.assert_allclose(loaded.scores(ps, sz), s, rtol=1e-5, atol=1e-6)


def test_the_switch_reads_on_off_auto_from_the_command_line() -> None:
    from metamodal.agent.config import load_mma_config

    got = [load_mma_config([f"llm_rank={v}"]).llm_rank for v in ("on", "off", "auto")]
    assert got == ["on", "off", "auto"] and load_mma_config([]).llm_rank == "auto"
    with pytest.raises(ValueError, match="llm_rank"):
        load_mma_config(["llm_rank=maybe"])
