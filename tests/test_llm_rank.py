"""``llm_rank``, the listwise LLM tool: a masked modality's text never reaches its prompt, its
prompts hold only the episode's own items' keywords, and it trains (SFT, then the expected-reward
stage) on Ray Train and scores pools longer than its letter window (a random-init tiny LM: the
machinery, not the quality)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from metamodal.agent.llm_rank import (
    WINDOW,
    ListwiseRanker,
    episode_prompts,
    llm_rank_tool,
    train_llm_rank,
    training_rows,
)
from metamodal.agent.menu_net import MenuPolicyConfig

FULL = ("graph", "text", "image")


@pytest.fixture(scope="module")
def ranker(world, tiny_llm, ray_session, tmp_path_factory) -> ListwiseRanker:
    _, _, _, b, store = world
    eps = b.target_positive_part("valid", "warm_user", FULL, limit=40, seed=0)
    cfg = MenuPolicyConfig(model=str(tiny_llm), train_layers=1, lora_r=4, batch=8, workers=1,
                           bc_epochs=1, rl_epochs=1)  # fmt: skip
    return train_llm_rank(store, eps, cfg, tmp_path_factory.mktemp("llm_rank"), 32, reuse=False)


class Recording:
    """The real ranker, with every prompt it is asked to score kept."""

    def __init__(self, ranker: ListwiseRanker) -> None:
        self.ranker, self.prompts = ranker, []

    def scores(self, prompts: list[str], n: int) -> np.ndarray:
        self.prompts += prompts
        return self.ranker.scores(prompts, n)


@pytest.mark.parametrize("pattern", [("graph",), ("image",), ("graph", "image"), ("text",), FULL])
def test_masked_text_never_reaches_a_prompt(world, ranker, pattern) -> None:
    _, _, _, b, store = world
    ep = b.under(b.target_positive_part("test", "warm_user", FULL, limit=1, seed=1)[0], pattern)
    rec = Recording(ranker)
    res = llm_rank_tool(rec)(store.view(ep))
    if "text" not in pattern:
        assert res.status == "unavailable" and not rec.prompts
        assert episode_prompts(store.view(ep)) is None
        return
    assert res.usable and len(res.scores) == len(ep.pool)
    kw = store.keywords["text"]
    allowed = {w for i in (*ep.history, *ep.pool) for w in kw[int(i)]}
    words = prompt_words(rec.prompts)
    assert words and words - {"-"} <= allowed  # only this episode's own items' keywords
    assert np.isnan(res.scores[[not kw[int(i)] for i in ep.pool]]).all()


def prompt_words(prompts: list[str]) -> set[str]:
    return {w for p in prompts for line in p.splitlines() for w in line.split(": ", 1)[1].split()}


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
        assert res.usable and words and not visual and rec.prompts[0].startswith("liked (text): ")
    elif "image" in pattern:
        kw = visual_store.keywords["image"]
        assert res.usable and rec.prompts[0].startswith("liked (image): ")
        assert words and words <= {w for i in (*ep.history, *ep.pool) for w in kw[int(i)]}
    else:
        assert res.status == "unavailable" and not rec.prompts


def test_trains_on_ray_train_and_scores_pools_longer_than_its_window(world, ranker) -> None:
    _, _, _, b, store = world
    summary = ranker.summary
    d = Path(summary["adapter"]).parent
    stages = {json.loads(x)["stage"] for x in (d / "metrics.jsonl").read_text().splitlines()}
    assert {"cache", "bc", "rl", "done"} <= stages and summary["rows"] == 32
    prompts, rewards, sizes = training_rows(store, b.target_positive_part(
        "valid", "warm_user", FULL, limit=40, seed=0), 32, 0)  # fmt: skip
    assert (rewards.sum(1) == 1).all() and (rewards.argmax(1) < sizes).all()
    assert all(p.startswith("liked (text): ") for p in prompts)
    ep = b.fixed(int(b.target_positive_part("test", "warm_user", FULL, limit=1, seed=1)[0].user),
                 "test", FULL)  # fmt: skip
    more = np.setdiff1d(np.arange(store.graph_items.shape[0]), ep.pool)[:WINDOW + 7 - len(ep.pool)]
    pool = np.concatenate([ep.pool, more])
    long = replace(ep, pool=pool, cold=np.zeros(len(pool), bool), first_stage=np.zeros(len(pool)))
    group, prompts = episode_prompts(store.view(long))
    assert group == "text" and len(prompts) == 2
    s = ranker.scores(prompts, len(long.pool))
    assert s.shape == (len(long.pool),) and np.isfinite(s).all() and (s <= 0).all()


def test_the_switch_reads_on_off_auto_from_the_command_line() -> None:
    from metamodal.agent.config import load_mma_config

    got = [load_mma_config([f"llm_rank={v}"]).llm_rank for v in ("on", "off", "auto")]
    assert got == ["on", "off", "auto"] and load_mma_config([]).llm_rank == "auto"
    with pytest.raises(ValueError, match="llm_rank"):
        load_mma_config(["llm_rank=maybe"])
