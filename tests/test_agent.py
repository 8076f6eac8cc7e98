"""MMA's foundation: episodes, masking, tools, the action parser, reward and RuleRouter-Fuse's
fit — on the generated shop with feature modalities added in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metamodal.agent.env import AgentEnv
from metamodal.agent.episodes import pool_ndcg
from metamodal.agent.evidence import EvidenceStore, MaskedModality
from metamodal.agent.fusion import fuse
from metamodal.agent.menus import fit_rule_route
from metamodal.agent.routes import Route, make_batch, reward_table
from metamodal.agent.tools import run_tools, tools_for
from metamodal.models import ZOO

FULL = ("graph", "text", "image")


def test_target_positive_episodes_hold_the_target_and_only_true_negatives(world) -> None:
    ds, split, miss, b, _ = world
    for task in ("warm_user", "cold_user", "cold_item"):
        eps = b.target_positive_part("test", task, FULL, limit=20, seed=0)
        assert eps, task
        for ep in eps:
            assert len(ep.pool) == 12 and len(set(ep.pool.tolist())) == 12
            assert ep.labels.sum() == 1
            negatives = set(ep.pool.tolist()) - set(ep.targets.tolist())
            assert not negatives & b.seen[ep.user]
            if task == "cold_user":
                assert len(ep.history) <= 2
            # coldness says nothing about which candidate is the target
            if task == "cold_item":
                assert miss.cold_items[ep.targets[0]] and ep.cold.all()
            else:
                assert not miss.cold_items[ep.targets[0]] and not ep.cold.any()


def test_a_pool_too_few_cold_negatives_can_fill_is_left_out_and_counted(world) -> None:
    """Pools ten wider than the catalogue has cold items: no cold-item pool is returned short (an
    easier task), and each one left out is counted; warm pools are unaffected."""
    from metamodal.agent.episodes import EpisodeBuilder

    ds, split, miss, b, store = world
    wide = EpisodeBuilder(ds, split, b.user_scores, b.history_scores, miss,
                          b.cfg.model_copy(update={"pool_size": int(miss.cold_items.sum()) + 10}),
                          content_scores=store.catalogue_scores)  # fmt: skip
    assert wide.target_positive_part("test", "cold_item", FULL, limit=10, seed=0) == []
    # every eligible interaction was tried before giving up, and each counted once
    assert wide.short_pools[("test", "cold_item")] == len(
        b.target_positive_part("test", "cold_item", FULL, limit=None, seed=0))
    warm = wide.target_positive_part("test", "warm_user", FULL, limit=10, seed=0)
    assert warm and all(len(e.pool) == wide.cfg.pool_size for e in warm)
    assert wide.short_pools[("test", "warm_user")] == 0


def test_top_ranked_is_the_head_of_the_full_stable_sort() -> None:
    """The partial ranking the hard negatives come from agrees with sorting the whole catalogue,
    ties and unscorable (−inf) items included."""
    from metamodal.agent.episodes import top_ranked

    rng = np.random.default_rng(0)
    for trial in range(200):
        s = rng.integers(0, 6, 40).astype(np.float64)  # many ties
        s[rng.random(40) < 0.3] = -np.inf
        m = int(rng.integers(0, 45))
        head, full = top_ranked(s, m), np.argsort(-s, kind="stable").tolist()
        assert head == full[: len(head)] and len(head) >= min(m + 1, 40), trial


def test_episodes_are_drawn_before_they_are_built_and_do_not_depend_on_the_limit(world) -> None:
    """A larger draw keeps the smaller one's episodes (the same pools and histories), and a user
    filter keeps only those users."""
    _, _, _, b, _ = world
    few = b.target_positive_part("valid", "cold_user", FULL, limit=5, seed=3)
    more = b.target_positive_part("valid", "cold_user", FULL, limit=15, seed=3)
    by_key = {e.key: e for e in more}
    assert len(few) == 5 and len(more) == 15 and {e.key for e in few} <= set(by_key)
    for e in few:
        np.testing.assert_array_equal(e.pool, by_key[e.key].pool)
        np.testing.assert_array_equal(e.history, by_key[e.key].history)
    users = {e.user for e in more[:3]}
    mine = b.target_positive_part("valid", "warm_user", FULL, limit=50, seed=3, users=users)
    assert mine and {e.user for e in mine} <= users


@pytest.mark.parametrize("depth", [1, 30])
def test_hard_negatives_come_from_the_surviving_evidence(world, depth: int) -> None:
    """Under only-text the hard negatives are drawn from the history's ``hard_depth`` nearest
    text neighbours, not from the retriever's top ranks (which made graph evidence
    anti-informative); depth 1 takes the very nearest in order. The same episode under the same
    pattern is the same pool, under another pattern a different one."""
    from metamodal.agent.episodes import EpisodeBuilder

    ds, split, miss, w, store = world
    b = EpisodeBuilder(ds, split, w.user_scores, w.history_scores, miss,
                       w.cfg.model_copy(update={"hard_share": 0.5, "popular_share": 0.0,
                                                "hard_depth": depth}),
                       content_scores=store.catalogue_scores)  # fmt: skip
    n_hard = round(b.cfg.hard_share * (b.cfg.pool_size - 1))
    allowed = np.ones(ds.n_items, bool)
    allowed[b.cold_items] = False
    for ep in b.target_positive_part("test", "warm_user", FULL, limit=6, seed=4):
        only_text = b.under(ep, ("text",))
        assert only_text.available == ("text",) and only_text.targets[0] == ep.targets[0]
        np.testing.assert_array_equal(b.under(ep, ("text",)).pool, only_text.pool)
        ok = allowed.copy()
        ok[list(b.seen[ep.user])] = False
        text_order = [i for i in np.argsort(-store.catalogue_scores("text", ep.history), kind="stable") if ok[i]]
        graph_order = [i for i in np.argsort(-b.user_scores(ep.user), kind="stable") if ok[i]]
        negs = set(only_text.pool.tolist()) - {int(ep.targets[0])}
        near = set(text_order[: max(depth, n_hard)])
        assert len(negs & near) >= n_hard  # the hard ones come from the text neighbourhood
        if depth == 1:
            assert set(text_order[:n_hard]) <= negs
        assert not set(graph_order[:n_hard]) <= negs


def test_fixed_pools_are_the_retrievers_top_k_and_may_miss_the_target(world) -> None:
    ds, split, _, b, _ = world
    users = np.unique(ds.interactions.user[split.test])[:40]
    eps = [e for u in users if (e := b.fixed(int(u), "test", FULL)) is not None]
    assert eps and all(len(e.pool) == 20 for e in eps)
    assert all(not set(e.pool.tolist()) & set(e.history.tolist()) for e in eps)
    for e in eps[:5]:  # exactly the top 20 by the retriever's own scores
        s = b.user_scores(e.user).copy()
        s[e.history] = -np.inf
        s[ds.interactions.item[split.valid][ds.interactions.user[split.valid] == e.user]] = -np.inf
        np.testing.assert_array_equal(e.pool, np.argsort(-s, kind="stable")[:20])
    missed = [e for e in eps if not e.labels.any()]  # no target is planted in the pool
    assert missed and len(missed) < len(eps)
    assert pool_ndcg(np.arange(20.0), missed[0]) == 0.0


def test_pool_ndcg_matches_a_hand_computed_case() -> None:
    from metamodal.agent.episodes import Episode

    pool = np.arange(12)
    ep = Episode(0, np.array([1]), pool, np.array([5, 40]), np.zeros(12), np.zeros(12, bool),
                 FULL, "warm_user", "fixed")  # fmt: skip
    scores = -np.arange(12.0)  # pool order: item 5 at rank 6; target 40 not in the pool
    ideal = 1 + 1 / np.log2(3)  # two targets could have been ranked 1 and 2
    assert pool_ndcg(scores, ep, 10) == pytest.approx((1 / np.log2(7)) / ideal)
    scores[5] = 9.0  # item 5 first
    assert pool_ndcg(scores, ep, 10) == pytest.approx(1 / ideal)
    scores[5] = -99.0  # last: outside the top 10
    assert pool_ndcg(scores, ep, 10) == 0.0


@pytest.mark.parametrize("pattern", [("graph",), ("text",), ("image",), ("text", "image")])
def test_no_masked_modality_reaches_any_tool_output_or_prompt(world, pattern) -> None:
    """Replace every masked source's data with noise: tool scores, summaries and the prompt
    must not change. And the masked data cannot be read through the view at all."""
    ds, _, _, b, store = world
    ep = b.target_positive_part("test", "warm_user", pattern, limit=1, seed=1)[0]
    tools = tools_for(store)
    before = run_tools(store, tools, ep)
    rng = np.random.default_rng(5)
    noisy = EvidenceStore(
        dict(store.groups),
        {
            n: (rng.normal(size=x.shape).astype(np.float32), m)
            if store.view(ep).group_of(n) not in pattern else (x, m)
            for n, (x, m) in store.features.items()
        },
        {g: ([["zzz"]] * len(k) if g not in pattern else k) for g, k in store.keywords.items()},
        rng.normal(size=store.graph_items.shape) if "graph" not in pattern else store.graph_items,
        store.aligned,
    )  # fmt: skip
    after = run_tools(noisy, tools_for(noisy), ep)
    for name in tools:
        assert before[name].summary == after[name].summary, name
        assert before[name].status == after[name].status
        if before[name].scores is not None:
            np.testing.assert_array_equal(before[name].scores, after[name].scores)
    for g in {"graph", "text", "image"} - set(pattern):
        assert before["graph" if g == "graph" else g].status == "unavailable"
        with pytest.raises(MaskedModality):
            store.view(ep).features(g) if g != "graph" else store.view(ep).first_stage()


def test_tools_score_and_summarise_what_is_observed(world) -> None:
    _, _, _, b, store = world
    ep = b.target_positive_part("test", "warm_user", FULL, limit=1, seed=2)[0]
    res = run_tools(store, tools_for(store), ep)
    assert {"graph", "text", "image", "keyword"} <= set(res)
    for r in res.values():
        if r.usable:
            assert r.scores.shape == (12,) and "scored" in r.summary
    assert "user keywords:" in res["keyword"].summary
    interactive = tools_for(store, interactive=True)
    masked = ep.with_available(("graph",))
    clar = run_tools(store, interactive, masked, ["clarify"])["clarify"]
    assert clar.usable and "text" in clar.summary  # answered from the held-out modalities


def test_fusion_drops_first_stage_without_graph_and_rulerouter_fits_on_validation(world) -> None:
    _, _, _, b, store = world
    env = AgentEnv(store, tools_for(store))
    eps = b.target_positive_part("valid", "warm_user", FULL, limit=30, seed=3)
    only_text = eps[0].with_available(("text",))
    res = run_tools(store, env.tools, only_text)
    s = fuse(res, {"text": 1.0}, None, 0.5, len(only_text.pool))
    assert np.isfinite(s).all()
    tools = list(env.tools)
    batch = make_batch([env.observe(e) for e in eps], tools)
    rr = fit_rule_route(batch, tools)
    base = Route.of(dict.fromkeys(tools, 1.0), 0.5)
    assert reward_table(batch, [rr]).mean() >= reward_table(batch, [base]).mean()
    assert 0.0 <= rr.lam <= 1.0 and {t for t, _ in rr.weights} <= set(tools)


def test_baselines_see_only_the_observed_modalities(world) -> None:
    """A late-fusion model rebuilt per pattern: each content pattern gives different item
    vectors, graph-less patterns get no user embeddings, and (regression) the checkpoint does not
    load the training-time features back over the masked ones."""
    import torch

    from metamodal.models import ZOO
    from metamodal.train.artifacts import TrainedRun
    from metamodal.train.data import build_model_data
    from metamodal.train.masked_scores import MaskedRunScorer

    ds, split, miss, b, store = world
    names = ["text_vec", "image_vec"]
    data, _ = build_model_data(ds, split, names, miss)
    net = ZOO["late_fusion"](data, ZOO["late_fusion"].Params(embedding_dim=8))
    state = net.state_dict()
    assert not any(k.startswith("content.") for k in state)  # features are data, not weights
    config = {
        "params": net.p.model_dump(),
        "data": {"normalise": "center_l2"},
        "train": {"seed": 0},
    }
    run = TrainedRun(Path("."), "late_fusion", config, ds, split, miss, names, state)
    sc = MaskedRunScorer(run, {n: store.group_of(n) for n in names})
    u_full, i_full = sc.vectors(FULL)
    u_text, i_text = sc.vectors(("text",))
    _, i_image = sc.vectors(("image",))
    assert u_full is not None and u_text is None
    assert not np.allclose(i_text, i_image) and not np.allclose(i_text, i_full)
    ep = b.target_positive_part("test", "warm_user", ("text",), limit=1, seed=0)[0]
    s = sc.scores(ep)
    assert s.shape == (12,) and np.isfinite(s).all()
    with torch.no_grad():
        net.eval()
        np.testing.assert_allclose(net.vectors()[1].numpy(), i_full, rtol=1e-5, atol=1e-6)

    # the `fusion` tool wraps such a scorer: replacing the masked modality (image) with noise
    # leaves its text-only answer unchanged, while the unmasked one (text) changes it
    from metamodal.agent.tools import model_tool

    tool = model_tool(sc, "fusion")
    before = tool(store.view(ep)).scores
    rng = np.random.default_rng(5)
    for name, mask_ok in (("image_vec", True), ("text_vec", False)):
        x = rng.normal(size=ds.modalities[name].features.shape).astype(np.float32)
        run2 = TrainedRun(Path("."), "late_fusion", config, ds, split, miss, names, state)
        after = model_tool(_scorer(run2, store, (name, x)), "fusion")(store.view(ep)).scores
        assert np.allclose(before, after) == mask_ok, name


def test_report_picks_the_strongest_baseline_and_pairs_episodes() -> None:
    from metamodal.agent.mma_report import markdown, summarise

    rng = np.random.default_rng(0)

    def seed(s: int) -> dict:
        base = rng.random(60)
        per = {}
        for cond in ("ooma:graph", "ooma:text", "fixed_pool"):
            per[cond] = {
                "mma_auto": (base + 0.1).tolist(),
                "rulerouter_fuse": (base + 0.05).tolist(),
                "learned_gate": (base + 0.02).tolist(),
                "mma_interactive": (base + 0.2).tolist(),
                "random_order": (base - 0.3).tolist(),
                "lightgcn": (base - 0.1).tolist(),
                "margo": base.tolist(),
            }
        # validation prefers lightgcn on the fixed pool: the strongest baseline follows it
        val = {c: {"margo": 0.3, "lightgcn": 0.2 if c != "fixed_pool" else 0.4}
               for c in per}  # fmt: skip
        return {"seed": s, "per_episode": per, "validation": val}

    rep = summarise([seed(0), seed(1), seed(2)])
    assert rep["strongest_baseline"] == {"ooma": "margo", "fixed_pool": "lightgcn"}
    assert rep["strongest_baseline_on_test"] == {"ooma": "margo", "fixed_pool": "margo"}
    assert "random_order" in rep["ooma"] and rep["strongest_baseline"]["ooma"] != "random_order"
    m = rep["ooma"]["margo"]["ndcg@10"]
    assert rep["gain_pct_over_strongest"]["ooma"]["mma_auto"] == pytest.approx(
        100 * (rep["ooma"]["mma_auto"]["ndcg@10"] - m) / m
    )
    sig = rep["significance"]["ooma"]["mma_auto_vs_margo"]
    assert sig["n"] == 180 and sig["wilcoxon_p"] < 1e-6 and sig["mean_diff"] == pytest.approx(0.1)
    assert rep["router_control"]["rulerouter_below_mma"]
    assert rep["targets_met"] == {"ooma": True, "fixed_pool": True}  # the bar, and p < 0.05
    assert rep["router_control"]["learned_gate_below_mma"]
    assert rep["significance"]["router_control"]["mma_auto_vs_learned_gate"]["ooma"]["n"] == 180
    assert set(rep["ooma"]["margo"]["per_modality"]) == {"graph", "text"}
    assert "mma_interactive (upper bound" in markdown(rep, "t")
    zero = seed(3)  # a strongest baseline that scores 0 has no relative gain to print
    zero["per_episode"]["fixed_pool"]["lightgcn"] = [0.0] * 60
    assert "no relative gain (the baseline scores 0)" in markdown(summarise([zero]), "t")


def test_what_a_user_sets_wins_over_the_quick_preset() -> None:
    """``--quick --set test_episodes=200`` reads 200 test episodes; what the user leaves alone
    comes from the preset, which still bounds the zoo's epochs when features are given."""
    from metamodal.agent.config import load_mma_config

    cfg = load_mma_config(["test_episodes=200", "zoo_overrides=[data.features=/f]"], quick_mode=True)
    assert cfg.test_episodes == 200 and cfg.fit_episodes == 150
    assert cfg.zoo_epochs == 15 and cfg.zoo_overrides == ["data.features=/f"]
    assert load_mma_config(["test_episodes=90"], quick_mode=True).test_episodes == 90
    assert load_mma_config([]).zoo_epochs is None and load_mma_config([]).policy.depth is None
    nested = load_mma_config(["policy.depth=8"], quick_mode=True).policy
    assert nested.depth == 8 and nested.bc_epochs == 6
    assert load_mma_config([], quick_mode=True, seeds=2).seeds == 2


@pytest.mark.parametrize("model", sorted(ZOO))
def test_every_zoo_model_scores_a_pool_from_the_observed_modalities_only(world, model: str) -> None:
    """The agent's baselines and fusion tools may be any zoo model: whatever its graphs (item
    kNN views, hyperedges, generated features), noise in a masked modality leaves its answer
    unchanged and noise in an observed one changes it (a graph-only model has none to change)."""
    import torch

    from metamodal.train.artifacts import TrainedRun
    from metamodal.train.data import build_model_data

    ds, split, miss, b, store = world
    names = ["text_vec", "image_vec"]
    data, _ = build_model_data(ds, split, names, miss)
    cls = ZOO[model]
    torch.manual_seed(0)
    net = cls(data, cls.Params())
    config = {"params": net.p.model_dump(), "data": {"normalise": "center_l2"}, "train": {"seed": 0}}
    ep = b.target_positive_part("test", "warm_user", ("graph", "text"), limit=1, seed=0)[0]
    uses_content = model not in ("bpr", "lightgcn")

    def scores(noise_in: str | None) -> np.ndarray:
        run = TrainedRun(Path("."), model, config, ds, split, miss, names, net.state_dict())
        x = np.random.default_rng(5).normal(size=ds.modalities[noise_in].features.shape) if noise_in else None
        s = _scorer(run, store, (noise_in, x.astype(np.float32)) if noise_in else None).scores(ep)
        assert s.shape == (12,) and np.isfinite(s).all()
        return s

    run = TrainedRun(Path("."), model, config, ds, split, miss, names, net.state_dict())
    assert _scorer(run, store).vectors(("text",))[0] is None  # no learned user vector without graph
    before = scores(None)
    np.testing.assert_allclose(scores("image_vec"), before, rtol=1e-4, atol=1e-5)
    assert np.allclose(scores("text_vec"), before, rtol=1e-4, atol=1e-5) != uses_content


def _scorer(run, store: EvidenceStore, noise: tuple[str, np.ndarray] | None = None):
    """A masked scorer over ``run``; ``noise``: (modality, features) put in place of its raw
    features, to show whether the scores read that modality."""
    from metamodal.train.masked_scores import MaskedRunScorer

    sc = MaskedRunScorer(run, {n: store.group_of(n) for n in run.modalities})
    if noise is not None:
        name, x = noise
        sc._raw = {**sc._raw, name: (x, sc._raw[name][1])}
    return sc
