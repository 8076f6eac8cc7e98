"""MMA's per-episode routing: statistics that never read a masked modality, the full-information
reward table, menus, the learned gate, and the LLM router's one-pass menu read-out trained on
Ray Train (a random-init tiny LM: this checks the machinery, not the policy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metamodal.agent.env import AgentEnv
from metamodal.agent.episodes import pool_ndcg
from metamodal.agent.evidence import EvidenceStore
from metamodal.agent.menus import LearnedGate, build_menu, fit_rule_route, group_floor, soft_targets
from metamodal.agent.routes import Route, candidate_routes, make_batch, reward_table
from metamodal.agent.rows import observe_rows, render_rows, shuffled_within
from metamodal.agent.stats import StatsCodec, episode_stats
from metamodal.agent.tools import run_tools, tools_for

FULL = ("graph", "text", "image")


def _noisy(store: EvidenceStore, ep, pattern) -> EvidenceStore:
    rng = np.random.default_rng(5)
    view = store.view(ep)
    return EvidenceStore(
        dict(store.groups),
        {n: (rng.normal(size=x.shape).astype(np.float32), m)
         if view.group_of(n) not in pattern else (x, m) for n, (x, m) in store.features.items()},
        {g: ([["zzz"]] * len(k) if g not in pattern else k) for g, k in store.keywords.items()},
        rng.normal(size=store.graph_items.shape) if "graph" not in pattern else store.graph_items,
        store.aligned,
    )  # fmt: skip


@pytest.mark.parametrize("pattern", [("graph",), ("text",), ("image",), ("text", "image")])
def test_statistics_and_prompt_never_read_a_masked_modality(world, pattern) -> None:
    """Masked sources replaced by noise: every statistic and the rendered prompt are the same,
    and no statistic names a masked tool."""
    _, _, _, b, store = world
    ep = b.under(b.target_positive_part("test", "warm_user", FULL, limit=1, seed=1)[0], pattern)
    noisy = _noisy(store, ep, pattern)
    stats = []
    for st in (store, noisy):
        res = run_tools(st, tools_for(st), ep)
        first = st.view(ep).first_stage() if "graph" in pattern else None
        stats.append(episode_stats(st.view(ep), res, first))
    assert stats[0] == stats[1]
    masked = {"graph", "text", "image", "keyword"} - set(pattern) - ({"keyword"} if "text" in pattern else set())
    assert not any(k.split(".")[0] in masked or k.split(".")[-1] in masked for k in stats[0])
    codec = StatsCodec(list(tools_for(store))).fit(stats)
    assert codec.render(stats[0], ep.task, len(ep.pool)) == codec.render(stats[1], ep.task, len(ep.pool))


def test_reward_table_equals_fusing_each_route_directly(world) -> None:
    _, _, _, b, store = world
    env = AgentEnv(store, tools_for(store))
    eps = [b.under(e, p) for e in b.target_positive_part("valid", "warm_user", FULL, limit=8, seed=0)
           for p in (FULL, ("text",), ("graph", "image"))]  # fmt: skip
    steps = [env.observe(e) for e in eps]
    tools = list(env.tools)
    routes = [*candidate_routes(tools, True)[:40], Route.of({}, 0.0)]
    table = reward_table(make_batch(steps, tools), routes)
    direct = np.array([[pool_ndcg(r.scores(s.results, s.first, len(s.ep.pool)), s.ep) for r in routes]
                       for s in steps])  # fmt: skip
    np.testing.assert_allclose(table, direct, atol=1e-12)


def test_rows_cover_fixed_pools_as_their_own_bucket_and_menus_hold_the_rule(world) -> None:
    ds, split, _, b, store = world
    env = AgentEnv(store, tools_for(store))
    users = np.unique(ds.interactions.user[split.valid])[:30]
    base = b.target_positive_part("valid", "warm_user", FULL, limit=30, seed=0)
    eps = [b.under(e, p) for p in (FULL, ("text",)) for e in base]
    eps += [e for u in users if (e := b.fixed(int(u), "valid", FULL)) is not None]
    rows = observe_rows(env, eps)
    assert ("fixed", FULL) in rows and ("target_positive", ("text",)) in rows
    assert all(s.ep.pool_kind == "fixed" for s in rows[("fixed", FULL)].steps)
    tools = list(env.tools)
    codec = StatsCodec(tools).fit([st for br in rows.values() for st in br.stats])
    render_rows(rows, codec)
    fixed = rows[("fixed", FULL)]
    assert fixed.prompts[0].startswith("fixed20 warm")
    assert len(set(fixed.prompts)) > 1  # per-episode statistics: not one prompt per bucket
    cands = candidate_routes(tools, True)
    r = reward_table(make_batch(fixed.steps, tools), cands)
    rr = fit_rule_route(make_batch(fixed.steps, tools), tools)
    menu = build_menu(cands, r, rr, 5)
    assert menu.rr == 0 and menu.routes[0] == rr and 5 <= len(menu.routes) <= 6  # the rule is A
    q = soft_targets(r, 0.05, 20.0)
    np.testing.assert_allclose(q.sum(1), 1.0)


def test_shuffled_statistics_keep_each_episodes_task_and_move_the_rest(world) -> None:
    """The shuffled control must remove per-episode information only: a prompt that moved to an
    episode of another task would also remove the task, which routing on the task alone uses."""
    ds, split, _, b, store = world
    env = AgentEnv(store, tools_for(store))
    eps = [b.under(e, FULL) for t in ("warm_user", "cold_user")
           for e in b.target_positive_part("valid", t, FULL, limit=20, seed=0)]  # fmt: skip
    rows = observe_rows(env, eps)
    render_rows(rows, StatsCodec(list(env.tools)).fit([st for br in rows.values() for st in br.stats]))
    br = rows[("target_positive", FULL)]
    sh = shuffled_within(rows, seed=3)[("target_positive", FULL)]
    moved = 0
    for i, step in enumerate(br.steps):
        j = next(k for k, st in enumerate(br.stats) if st is sh.stats[i])
        assert br.steps[j].ep.task == step.ep.task
        assert sh.prompts[i] == br.prompts[j]
        np.testing.assert_array_equal(sh.x[i], br.x[j])
        moved += j != i
    assert moved > len(br) // 2


def test_rule_route_never_abstains_even_when_every_tool_ranks_the_target_last() -> None:
    """All-zero weights would leave the pool's own order (the target at position 0 here), which
    beats every tool; the rule must still weigh some tool."""
    from metamodal.agent.routes import Batch

    n, pool, tools = 50, 20, ["audio", "keyword"]
    labels = np.zeros((n, pool), bool)
    labels[:, 0] = True
    z = np.tile(np.linspace(-1.0, 1.0, pool), (n, len(tools), 1))  # audio: target scored lowest
    z[:, 1] = np.random.default_rng(0).normal(size=(n, pool))  # keyword: noise, better than audio
    batch = Batch(z, np.ones((n, len(tools)), bool), np.zeros((n, pool)), np.zeros(n, bool),
                  labels, np.ones(n, int), tools)  # fmt: skip
    assert reward_table(batch, [Route.of({})]).mean() == 1.0  # abstaining would win
    rr = fit_rule_route(batch, tools)
    assert rr.weights and all(w > 0 for _, w in rr.weights)


def test_learned_gate_finds_a_planted_switch_and_loses_it_when_shuffled() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    r = np.where(x[:, :1] > 0, [[1.0, 0.0]], [[0.0, 1.0]]) + 0.1 * rng.normal(size=(600, 2))
    key = ("target_positive", ("text",))
    gate = LearnedGate(1e-3).fit({key: x[:400]}, {key: r[:400]})
    got = r[400:][np.arange(200), gate.choose(key, x[400:])].mean()
    assert got > 0.9
    shuffled = LearnedGate(1e-3).fit({key: x[:400][rng.permutation(400)]}, {key: r[:400]})
    assert r[400:][np.arange(200), shuffled.choose(key, x[400:])].mean() < 0.7


def test_learned_gate_learns_from_small_noisy_single_target_rewards() -> None:
    """NDCG-sized rewards on a 9-route menu: route 1 wins only on one task (a flag among noise
    features), each episode's reward a 0/1 hit. The gate must switch on the flag (a line search
    over a zero-valued surrogate loss never moved off uniform: always route 0, 0.67 here)."""
    rng = np.random.default_rng(1)
    n = 3000
    flag = (rng.random(n) < 0.3).astype(float)
    x = np.column_stack([flag, rng.normal(size=(n, 5))])
    p_hit = np.full((n, 9), 0.08)
    p_hit[:, 0], p_hit[:, 1] = 0.15 - 0.05 * flag, 0.10 + 0.10 * flag
    r = (rng.random((n, 9)) < p_hit).astype(float)
    key = ("target_positive", ("audio",))
    gate = LearnedGate(1e-3).fit({key: x[:2000]}, {key: r[:2000]})
    assert (gate.choose(key, x[2000:]) == flag[2000:].astype(int)).mean() > 0.9


def test_warm_start_imitates_the_gate_only_where_it_beats_the_rule_on_select() -> None:
    """Bucket a: route 1 wins on flagged rows, so the gate beats the rule (route 0) on select and
    its cross-fitted probabilities are the targets; bucket b: nothing to learn, the rule's
    route is the target."""
    from metamodal.agent.menus import crossfit_probs, fit_gate, gate_warm_targets

    rng = np.random.default_rng(2)
    a, b = ("target_positive", ("audio",)), ("fixed", ("audio",))

    def rows(n):
        flag = (rng.random(n) < 0.5).astype(float)
        x = np.column_stack([flag, rng.normal(size=(n, 3))])
        ra = np.column_stack([1 - flag, flag, np.zeros(n)]) + 0.05 * rng.normal(size=(n, 3))
        return {a: x, b: x.copy()}, {a: ra, b: np.tile([0.3, 0.2, 0.1], (n, 1)) + 0.05 * rng.normal(size=(n, 3))}

    fit, sel = rows(600), rows(300)
    gate, _ = fit_gate(*fit, *sel)
    q, source = gate_warm_targets(gate, fit, sel, {a: 0, b: 0}, seed=0)
    assert source == {a: "gate", b: "rule"}
    np.testing.assert_allclose(q[a], crossfit_probs(gate, *fit, seed=0)[a])
    np.testing.assert_allclose(q[a].sum(1), 1.0)
    assert (q[a].argmax(1) == fit[0][a][:, 0]).mean() > 0.95  # cross-fitted, still right
    assert (q[b] == np.eye(3)[0]).all()


def test_bucket_floor_is_the_cross_entropy_of_each_groups_mean_target() -> None:
    """The floor a bucket-only router reaches: group means, computed by hand here; one row per
    group gives the targets' own entropy, and no grouping beats it (Gibbs)."""
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8]])
    assert group_floor(q, ["a", "a", "b"]) == pytest.approx(
        (2 * np.log(2) - 0.2 * np.log(0.2) - 0.8 * np.log(0.8)) / 3)  # fmt: skip
    q = np.random.default_rng(0).dirichlet(np.ones(5), 40)
    entropy = -(q * np.log(q)).sum(1).mean()
    assert group_floor(q, [str(i) for i in range(40)]) == pytest.approx(entropy)
    assert group_floor(q, [str(i % 3) for i in range(40)]) > entropy


def test_llm_rows_are_task_balanced_as_far_as_the_rows_allow() -> None:
    from collections import Counter

    from metamodal.agent.seed import task_balanced

    tasks = ["warm_user"] * 100 + ["cold_user"] * 100 + ["cold_item"] * 10
    keep = task_balanced(tasks, 60, np.random.default_rng(0))
    got = Counter(tasks[i] for i in keep)
    assert len(keep) == len(set(keep.tolist())) == 60 and got["cold_item"] == 10
    assert got["warm_user"] + got["cold_user"] == 50 and min(got.values()) == 10
    assert len(task_balanced(tasks[:5], 60, np.random.default_rng(0))) == 5


def test_a_bf16_trunk_reads_a_prompt_the_same_whatever_shares_its_batch() -> None:
    """Serve batches requests as they come; the run read the same prompts in other batches.
    Prompts are batched only with prompts of their token length, so a bf16 trunk state is
    bit-identical alone and in any batch (padded batches differ in a few rows of this model:
    the attention's key blocks change); and bf16 stays close to float32. Random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from metamodal.agent.menu_net import MenuNet, native_bf16
    from metamodal.llm import load_tokenizer

    if not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no native bf16 ('auto' keeps the trunk in float32 here)")
    tok = load_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id)  # fmt: skip
    net = LlamaForCausalLM(cfg)
    prompts = [f"tp20 warm h{i} x0\ntext {' 7' * (9 * i)}12" for i in range(12)]  # 12 to 210 tokens
    with torch.no_grad():
        fp32 = MenuNet(net, tok, 1, 4, trunk_dtype="float32").encode(prompts, batch=8)
        bf16 = MenuNet(net, tok, 1, 4, trunk_dtype="bfloat16")  # layer 0 (the trunk) now in bf16
        batched = bf16.encode(prompts, batch=8)
        alone = [bf16.encode([p], batch=1)[0] for p in prompts]
    assert len({len(s) for s in batched}) == len(prompts)
    assert all(b.dtype == torch.bfloat16 and torch.equal(a, b) for a, b in zip(alone, batched, strict=True))
    for a, b in zip(fp32, batched, strict=True):
        torch.testing.assert_close(b.float(), a, rtol=0.05, atol=0.05)


def test_menu_router_reads_letters_and_trains_on_ray_train(world, tiny_llm, ray_session, tmp_path):
    """One forward pass gives π over each row's menu (zero past its size); the warm start and
    the RL stage run on two Ray Train workers under DeepSpeed and write adapters and metrics."""
    from metamodal.agent.menu_net import MenuPolicyConfig, load_menu_policy, trunk_dtype_name
    from metamodal.agent.menu_policy import train_menu_policy

    rng = np.random.default_rng(0)
    prompts = [f"tp20 warm h{i % 10} x0\ntext {i % 7}{i % 3}12" for i in range(24)]
    sizes = np.array([3 + i % 3 for i in range(24)])
    rewards = rng.random((24, 6)) * (np.arange(6)[None] < sizes[:, None])
    q = soft_targets(rewards, 0.05, 0.0) * (np.arange(6)[None] < sizes[:, None])
    q /= q.sum(1, keepdims=True)
    cfg = MenuPolicyConfig(model=str(tiny_llm), train_layers=1, lora_r=4, batch=4, workers=2,
                           bc_epochs=1, rl_epochs=1)  # fmt: skip
    summary = train_menu_policy(prompts, rewards, sizes, q, tmp_path, cfg)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter_bc" / "adapter_config.json").is_file()
    assert summary["bc_loss_first"] > 0 and summary["bc_loss_last"] > 0
    assert 0 <= summary["target_entropy"] <= np.log(6)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"cache", "bc", "rl", "done"} <= {r["stage"] for r in rows}
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert summary["trunk_dtype"] == trunk_dtype_name("auto", torch.device("cpu"))  # read-outs reuse it
    mn = load_menu_policy(summary)
    p = mn.probs(prompts, sizes.tolist())
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p[np.arange(6)[None] >= sizes[:, None]] < 1e-6).all()
    np.testing.assert_allclose(mn.probs(prompts[:3], sizes[:3].tolist()), p[:3], atol=1e-5)
    # two adapters of one base share the frozen trunk's states: the second runs only its top
    from metamodal.agent.menu_net import SHARED_TRUNK

    before = len(SHARED_TRUNK._states)
    for name in ("adapter_bc", "adapter"):
        shared = load_menu_policy(summary, tmp_path / name, share_trunk=True)
        np.testing.assert_allclose(shared.probs(prompts, sizes.tolist()),
                                   load_menu_policy(summary, tmp_path / name).probs(prompts, sizes.tolist()),
                                   atol=1e-5)  # fmt: skip
        assert len(SHARED_TRUNK._states) == before + len(set(prompts))


def test_a_shallower_router_keeps_the_bottom_layers_norm_and_head(tiny_llm) -> None:
    """``depth`` cuts the LM to its bottom layers: the kept model computes exactly what the full
    one computes at that depth (then its own final norm and LM head), and the router built from
    it puts LoRA on the top of the kept layers."""
    from metamodal.agent.menu_net import MenuPolicyConfig, _parts, build_menu_net
    from metamodal.llm import load_model

    full, cut = load_model(str(tiny_llm)), load_model(str(tiny_llm), depth=1)
    assert len(cut.model.layers) == 1 and cut.config.num_hidden_layers == 1
    x = torch.tensor([[5, 17, 99, 3, 42]])
    with torch.no_grad():
        h = full(x, output_hidden_states=True).hidden_states[1]  # after the bottom layer
        want = full.lm_head(full.model.norm(h))
        torch.testing.assert_close(cut(x).logits, want)
    with pytest.raises(ValueError, match="has 2 decoder layers"):
        load_model(str(tiny_llm), depth=3)
    mn = build_menu_net(MenuPolicyConfig(model=str(tiny_llm), depth=1, train_layers=1, lora_r=4), 4, "float32")
    layers = _parts(mn.net)[1]
    assert len(layers) == 1 and mn.cut == 0
    assert any("lora" in n for n, _ in layers[0].named_parameters())


@pytest.mark.parametrize("train_layers", [0, 1])
def test_every_lora_layer_learns_from_the_stage_loss(tiny_llm, train_layers: int) -> None:
    """``train_layers=0`` puts LoRA in every layer and caches nothing (the trunk is the
    embeddings): the loss reaches every layer's adapters; with 1, only the top one has any."""
    from metamodal.agent.menu_net import MenuPolicyConfig, _parts, build_menu_net, stage_loss

    cfg = MenuPolicyConfig(model=str(tiny_llm), train_layers=train_layers, lora_r=4)
    mn = build_menu_net(cfg, 4, "float32")
    assert mn.cut == (0 if train_layers == 0 else 1)
    q = np.eye(4, dtype=np.float32)[[0, 2]]
    rows = {"sizes": np.array([4, 3]), "q": q, "rewards": q, "ref": np.full((2, 4), 0.25, np.float32),
            "reward_scale": 1.0}  # fmt: skip
    states = mn.encode(["stats: 1 2 3", "stats: 9 8"])
    for stage in ("bc", "rl"):
        mn.net.zero_grad()
        stage_loss(mn, states, rows, np.arange(2), stage, 0.05).backward()
        got = [any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in layer.named_parameters() if "lora" in n)
               for layer in _parts(mn.net)[1]]  # fmt: skip
        assert got == ([True, True] if train_layers == 0 else [False, True]), stage


@pytest.mark.parametrize("train_layers", [0, 1])
def test_a_shared_prefix_is_read_once_and_reads_what_the_whole_prompt_reads(tiny_llm, train_layers: int) -> None:
    """Prompts that share a prefix (``SHARED``) run it once and each rest against its keys and
    values: the letters' probabilities equal the whole prompts' read through ``encode`` and
    ``logits`` (what training reads), alone or with the pool, whatever the rests' lengths.
    Random weights, LoRA made non-zero."""
    from metamodal.agent.menu_net import SHARED, MenuPolicyConfig, build_menu_net

    cfg = MenuPolicyConfig(model=str(tiny_llm), train_layers=train_layers, lora_r=4)
    mn = build_menu_net(cfg, 2, "float32")
    torch.manual_seed(1)
    with torch.no_grad():
        for n, w in mn.net.named_parameters():
            if "lora_B" in n:
                w.normal_(0, 0.5)
    prefix = "A: match\nB: no match\nliked (text): jazz piano night blue"
    items = ["jazz", "heavy metal guitar riff", "-", "blue note piano trio live", "x"]
    prompts = [f"{prefix}\nitem:{SHARED} {w}" for w in items] + ["a prompt with nothing shared"]
    sizes = [2] * len(prompts)
    runs: list[int] = []
    read = mn._read_shared
    mn._read_shared = lambda pre, keys, batch: runs.append(len(keys)) or read(pre, keys, batch)
    got = mn.probs(prompts, sizes)
    assert runs == [len(items)]  # one prefix, read once for its five prompts
    with torch.no_grad():
        whole = torch.softmax(mn.logits(mn.encode(prompts), torch.tensor(sizes)), -1).numpy()
    np.testing.assert_allclose(got, whole, atol=1e-5)
    mn.forget_read_outs()
    alone = np.concatenate([mn.probs([p], [2]) for p in prompts])
    np.testing.assert_allclose(alone, got, atol=1e-6)
    assert mn._ids(prompts[1]) == (mn.tok(prefix + "\nitem:", add_special_tokens=False).input_ids
                                   + mn.tok(" heavy metal guitar riff" + mn.answer, add_special_tokens=False).input_ids)


def test_coverage_offers_a_model_that_wins_only_where_one_modality_survives() -> None:
    """``mean`` keeps the two best overall; ``coverage`` trades the runner-up for the model that
    is best in the only-graph bucket, because a route picks its tools per bucket."""
    from metamodal.agent.tool_models import pick_tool_models

    full, graph, fixed = ("target_positive", FULL), ("target_positive", ("graph",)), ("fixed", FULL)
    ndcg = {
        "strong": {full: np.full(50, 0.40), graph: np.full(50, 0.10), fixed: np.full(20, 0.30)},
        "runner_up": {full: np.full(50, 0.38), graph: np.full(50, 0.11), fixed: np.full(20, 0.29)},
        "graph_only": {full: np.full(50, 0.20), graph: np.full(50, 0.30), fixed: np.full(20, 0.20)},
    }  # fmt: skip
    assert pick_tool_models(ndcg, 2, "mean") == ["strong", "runner_up"]
    assert pick_tool_models(ndcg, 2, "coverage") == ["strong", "graph_only"]
    assert pick_tool_models(ndcg, 5, "coverage") == ["strong", "graph_only", "runner_up"]
    ndcg["fixed_best"] = {full: np.full(50, 0.10), graph: np.full(50, 0.05), fixed: np.full(20, 0.31)}
    assert pick_tool_models(ndcg, 2, "coverage") == ["strong", "graph_only"]  # +0.01 in one bucket
    assert pick_tool_models(ndcg, 2, "coverage_fixed") == ["strong", "graph_only", "fixed_best"]
    del ndcg["fixed_best"]
    assert pick_tool_models(ndcg, 2, "coverage_fixed") == ["strong", "graph_only"]  # already chosen
