"""One seed of ``metamodal mma run``: episodes → observed rows → menus and the full-information
reward table → the routers (RuleRouter-Fuse per bucket, the best fixed route, the learned gate,
MMA's LLM router and its ablations) → every method's per-episode NDCG@10 on the test rows.

Data roles, nothing tuned on test: *fit* validation users' episodes build the statistics'
deciles and the menus and train the gate and the LLM; *select* validation users' episodes fit
RuleRouter-Fuse, choose the best fixed route, the gate's L2, the clarification weight and (in
the report) the strongest baseline; test episodes are only scored.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from metamodal.agent.config import MMAConfig, wants_llm_rank
from metamodal.agent.env import AgentEnv
from metamodal.agent.episode_sets import seed_episodes
from metamodal.agent.episodes import pool_ndcg
from metamodal.agent.evidence import EvidenceStore
from metamodal.agent.extensions import ToolContext, build_tools, slug
from metamodal.agent.llm_rank import NAME as LLM_RANK
from metamodal.agent.llm_rank import llm_rank_tool, train_llm_rank
from metamodal.agent.menus import (
    LearnedGate,
    build_menu,
    fit_gate,
    fit_rule_route,
    gate_warm_targets,
    soft_targets,
)
from metamodal.agent.routed import KINDS, RoutedReranker, bucket_key, save_router, write_rankings
from metamodal.agent.routes import Route, candidate_routes, make_batch, reward_table
from metamodal.agent.rows import (
    BucketRows,
    Rows,
    observe_rows,
    render_rows,
    score_rows,
    shuffled_within,
)
from metamodal.agent.stats import StatsCodec
from metamodal.agent.tool_models import choose_tool_models
from metamodal.agent.tools import model_tool, tools_for
from metamodal.data.missing import ooma_patterns


def log(msg: str) -> None:
    print(f"[mma] {msg}", flush=True)


def seed_env(store, scorers, models, fit_e, cfg, seed_dir, seed, reuse, run) -> tuple[AgentEnv, dict | None, dict]:
    """The seed's tools: the dataset's, the chosen zoo models, ``llm_rank`` (trained on the fit
    episodes) when wanted, and the configured factories' tools (``cfg.tools``, trained on the
    fit episodes too; ``run``: the retriever's); ``llm_rank``'s training summary or None, and
    per factory path the tools it added and its summary."""
    extra = {m: model_tool(scorers[m], m) for m in models}
    summary = None
    pcfg = cfg.policy.model_copy(update={"seed": seed})
    added, record = build_tools(cfg.tools, lambda path: ToolContext(
        store, run, pcfg, seed_dir / "tools" / slug(path), fit_e, cfg.tool_rows, reuse))  # fmt: skip
    extra.update(added)
    if added:
        log(f"seed {seed}: tools from {', '.join(cfg.tools)}: {', '.join(added)}")
    if wants_llm_rank(cfg):
        t0 = time.perf_counter()
        # it reads candidates' text, not digits: the whole LM whatever the router's depth
        pcfg = cfg.policy.model_copy(update={"seed": seed, "depth": None})
        ranker = train_llm_rank(store, fit_e, pcfg, seed_dir / "llm_rank", cfg.llm_rank_rows, reuse,
                                cfg.llm_rank_mode)  # fmt: skip
        extra[LLM_RANK], summary = llm_rank_tool(ranker), ranker.summary
        log(f"seed {seed}: llm_rank ({cfg.llm_rank_mode}) trained on {summary['rows']} rows "
            f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return AgentEnv(store, tools_for(store, extra=extra)), summary, record


def make_menus(fit: Rows, sel: Rows, tools: list[str], k: int) -> dict:
    menus = {}
    for key, br in fit.items():
        usable = [t for t in tools if any(s.results[t].usable for s in br.steps if t in s.results)]
        first = any(s.first is not None for s in br.steps)
        cands = candidate_routes(usable, first)
        r_fit = reward_table(make_batch(br.steps, tools), cands)
        rr = fit_rule_route(make_batch(sel[key].steps, tools), usable)
        rr = rr if first else Route(rr.weights, 0.0)  # λ means nothing without a first stage
        menus[key] = build_menu(cands, r_fit, rr, k)
    return menus


def subsample(rows: Rows, n: int, seed: int) -> Rows:
    """At most ``n`` rows of each target-positive bucket (drawn with ``seed``); fixed pools
    whole (their rankings are what a served request must reproduce)."""
    out: Rows = {}
    for key, br in rows.items():
        if key[0] == "fixed" or len(br) <= n:
            out[key] = br
            continue
        i = np.sort(np.random.default_rng([seed, 13]).permutation(len(br))[:n])
        out[key] = BucketRows([br.steps[j] for j in i], [br.stats[j] for j in i], br.rewards[i],
                              [br.prompts[j] for j in i], [br.bucket_prompts[j] for j in i],
                              br.x[i])  # fmt: skip
    return out


def pick(rows: Rows, choice: dict) -> dict:
    """Per bucket, the chosen route's reward per row (``choice``: key -> index or [n] array)."""
    return {k: br.rewards[np.arange(len(br)), np.broadcast_to(choice[k], (len(br),))]
            for k, br in rows.items()}  # fmt: skip


def gate_inputs(rows: Rows) -> tuple[dict, dict]:
    """(statistics, rewards) per bucket: what the gate fits and is scored on."""
    return {k: v.x for k, v in rows.items()}, {k: v.rewards for k, v in rows.items()}


def fit_seed_gate(fit: Rows, sel: Rows) -> tuple[LearnedGate, dict]:
    """The learned gate on the fit rows, its L2 chosen on the select rows."""
    return fit_gate(*gate_inputs(fit), *gate_inputs(sel))


def warm_targets(gate: LearnedGate, fit: Rows, sel: Rows, menus: dict, cfg: MMAConfig, seed: int):
    """Per bucket, the LLM router's warm-start distribution over the menu for every fit row
    (``cfg.warm_start``), and where it came from."""
    if cfg.warm_start == "rewards":
        return ({k: soft_targets(br.rewards, cfg.tau, cfg.shrink) for k, br in fit.items()},
                dict.fromkeys(fit, "rewards"))  # fmt: skip
    rule = {k: m.rr for k, m in menus.items()}
    return gate_warm_targets(gate, gate_inputs(fit), gate_inputs(sel), rule, seed)


def gate_choices(gate: LearnedGate, fit: Rows, sel: Rows, test: Rows, seed: int) -> tuple[dict, dict, dict]:
    """The gate's route per test row; the same gate refitted on statistics shuffled within each
    bucket (the control); its choices on select."""
    chosen = {k: gate.choose(k, v.x) for k, v in test.items()}
    sh_fit, sh_test = shuffled_within(fit, seed), shuffled_within(test, seed + 1)
    sh = LearnedGate(gate.l2).fit(gate_inputs(sh_fit)[0], gate_inputs(fit)[1])
    shuffled = {k: sh.choose(k, v.x) for k, v in sh_test.items()}
    return chosen, shuffled, {k: gate.choose(k, v.x) for k, v in sel.items()}


def task_balanced(tasks: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` row indices, as even over the tasks as the rows allow (the rest drawn from what is
    left): the fit rows are skewed (fewer cold-item episodes exist) while select and test are
    even, and a task's route switch is only learnt if the LLM sees that task."""
    by = {t: rng.permutation(np.flatnonzero(np.asarray(tasks) == t)) for t in dict.fromkeys(tasks)}
    quota = n // max(1, len(by))
    keep = [i for idx in by.values() for i in idx[:quota]]
    rest = rng.permutation([i for idx in by.values() for i in idx[quota:]])
    return np.sort(np.concatenate([keep, rest[: max(0, n - len(keep))]]).astype(int))


def llm_rows(fit: Rows, menus: dict, learned: dict, cfg: MMAConfig, seed: int, prompt_kind: str):
    """A task-balanced subsample of each bucket's fit rows with their warm-start targets
    (computed on all of the bucket's fit rows) and rewards, padded to the longest menu, and
    each row's bucket-only prompt (its group for ``group_floor``). Buckets whose target is the
    rule's one route need few rows; those where the gate routes per episode get
    ``cfg.llm_rows``."""
    n_letters = max(len(m.routes) for m in menus.values())
    prompts, rewards, sizes, q, groups = [], [], [], [], []
    rng = np.random.default_rng([seed, 3])
    for key, br in fit.items():
        qs = learned["targets"][key]
        n = cfg.llm_rule_rows if learned["source"][key] == "rule" else cfg.llm_rows
        keep = task_balanced([st.ep.task for st in br.steps], n, rng)
        src = br.prompts if prompt_kind != "bucket" else br.bucket_prompts
        for i in keep:
            prompts.append(src[i])
            groups.append(br.bucket_prompts[i])
            pad = n_letters - br.rewards.shape[1]
            rewards.append(np.pad(br.rewards[i], (0, pad)))
            q.append(np.pad(qs[i], (0, pad)))
            sizes.append(br.rewards.shape[1])
    return prompts, np.stack(rewards), np.array(sizes), np.stack(q), groups


def train_llm(fit, menus, learned, cfg, seed, out: Path, prompt_kind: str, reuse: bool) -> dict:
    from metamodal.agent.menu_policy import train_menu_policy

    d = out / f"router_{prompt_kind}"
    if reuse and (d / "summary.json").is_file() and (d / "adapter").is_dir():
        log(f"seed {seed}: reusing the {prompt_kind} router in {d}")
        return json.loads((d / "summary.json").read_text())
    p, r, s, q, groups = llm_rows(fit, menus, learned, cfg, seed, prompt_kind)
    log(f"seed {seed}: training the {prompt_kind} router on {len(p)} rows")
    pcfg = cfg.policy.model_copy(update={"seed": seed})
    summary = train_menu_policy(p, r, s, q, d, pcfg, groups=groups)
    log(f"seed {seed}: {prompt_kind} router: warm-start cross-entropy {summary['bc_loss_first']:.3f} -> "
        f"{summary['bc_loss_last']:.3f} (bucket-only floor {summary['bucket_floor']:.3f}: above it nothing "
        f"per episode is learnt; the targets' own entropy {summary['target_entropy']:.3f}; "
        f"{summary['seconds']:.0f} s)")  # fmt: skip
    return summary


def choose_adapter(summary: dict, sel_llm: Rows, prompt_kind: str) -> tuple[dict, dict]:
    """The warm start alone or warm start + RL, whichever routes the select rows better: the RL
    stage's per-row rewards are single-episode and noisy, and it can undo what the warm start
    learnt. Chosen on validation; both stay on disk (the BC-only ablation reads the former).
    Returns the summary naming the choice, and the chosen adapter's routes on ``sel_llm``."""
    mean, choices = {}, {}
    for name in ("adapter_bc", "adapter"):
        choices[name] = llm_choices(summary, sel_llm, prompt_kind, str(Path(summary["adapter"]).with_name(name)))
        mean[name] = float(np.mean(np.concatenate(list(pick(sel_llm, choices[name]).values()))))
    best = max(mean, key=lambda k: (mean[k], k == "adapter"))  # ties keep the RL stage
    return {**summary, "adapter_name": best, "adapter_select": mean}, choices[best]


def llm_choices(summary: dict, rows: Rows, prompt_kind: str, adapter: str | None = None) -> dict:
    from metamodal.agent.menu_net import load_menu_policy

    name = summary.get("adapter_name", "adapter")
    mn = load_menu_policy(summary, adapter or str(Path(summary["adapter"]).with_name(name)), share_trunk=True)
    out = {}
    for k, br in rows.items():
        prompts = br.prompts if prompt_kind != "bucket" else br.bucket_prompts
        probs = mn.probs(prompts, [br.rewards.shape[1]] * len(br))
        out[k] = probs.argmax(1)
    return out


def interactive_ndcg(store, rows: Rows, menus, choice: dict, w: float) -> dict:
    """MMA-Interactive: MMA-Auto's route plus the clarification tool (held-out evidence)."""
    from metamodal.agent.fusion import fuse
    from metamodal.agent.tools import clarify_tool

    clar = clarify_tool(store)
    out = {}
    for k, br in rows.items():
        vals = []
        for i, s in enumerate(br.steps):
            route = menus[k].routes[int(choice[k][i])]
            res = {**s.results, "clarify": clar(store.view(s.ep))}
            x = fuse(res, {**route.as_dict, "clarify": w}, s.first, route.lam, len(s.ep.pool))
            vals.append(pool_ndcg(x, s.ep))
        out[k] = np.array(vals)
    return out


def random_ndcg(rows: Rows, seed: int) -> dict:
    rng = np.random.default_rng([seed, 99])
    return {k: np.array([pool_ndcg(rng.random(len(s.ep.pool)), s.ep) for s in br.steps])
            for k, br in rows.items()}  # fmt: skip


def single_tool_ndcg(rows: Rows, tool: str) -> dict:
    """One tool's ranking alone (λ 0; where it cannot answer, the fusion rule's fallback)."""
    route = Route.of({tool: 1.0})
    return {k: np.array([pool_ndcg(route.scores(s.results, s.first, len(s.ep.pool)), s.ep)
                         for s in br.steps]) for k, br in rows.items()}  # fmt: skip


def zoo_ndcg(scorers, rows: Rows) -> dict[str, dict]:
    return {n: {k: np.array([pool_ndcg(sc.scores(s.ep), s.ep) for s in br.steps])
                for k, br in rows.items()} for n, sc in scorers.items()}  # fmt: skip


def routed_choices(routed: RoutedReranker, rows: Rows) -> dict:
    return {k: routed.choose(k, br.prompts) for k, br in rows.items()}


def llm_ablations(mma: RoutedReranker, mma_test: dict, fit, sel_llm, test: Rows, menus, learned, cfg, seed,
                  out, reuse) -> dict:  # fmt: skip
    """The LLM router's ablation rows on test: warm start only, shuffled statistics, and a
    router trained on today's bucket-only prompt (its adapter chosen on select as MMA's is).
    Where select chose the warm-start adapter, warm start only *is* MMA: its choices
    (``mma_test``) are not read again."""
    res, summary = {}, mma.policy
    if "bc_only" in cfg.llm_ablations:
        bc = mma_test if summary.get("adapter_name") == "adapter_bc" else llm_choices(
            summary, test, "stats", str(Path(summary["adapter"]).with_name("adapter_bc")))  # fmt: skip
        res["mma_bc_only"] = pick(test, bc)
    if "shuffled" in cfg.llm_ablations:  # the same prompts permuted: MMA's net has read them
        res["mma_shuffled_stats"] = pick(test, routed_choices(mma, shuffled_within(test, seed + 1)))
    if "bucket_prompt" in cfg.llm_ablations:
        bsum, _ = choose_adapter(train_llm(fit, menus, learned, cfg, seed, out, "bucket", reuse), sel_llm, "bucket")
        res["mma_bucket_prompt"] = pick(test, llm_choices(bsum, test, "bucket"))
    return res


def method_rewards(store, scorers, fit, sel, test, menus, routed, learned, cfg, seed, out, reuse) -> tuple:
    """Per method, per bucket, the per-row NDCG@10 on select and on test. MMA-Auto and
    RuleRouter-Fuse choose through ``routed`` (loaded from ``router.json``), as Serve does;
    ``learned``: the fitted gate and the LLM's warm-start targets."""
    res_t, res_s, info = {}, {}, {}
    sel_llm = learned["select_llm"]  # the LLM reads a share of select
    info["select_llm"] = sel_llm
    choices = {kind: {"valid": learned["mma_valid"] if kind == "mma" else routed_choices(r, sel),
                      "test": routed_choices(r, test)} for kind, r in routed.items()}  # fmt: skip
    info["choices"] = choices
    res_t["rulerouter_fuse"] = pick(test, choices["rulerouter"]["test"])
    res_s["rulerouter_fuse"] = pick(sel, choices["rulerouter"]["valid"])
    res_t["mma_auto"] = pick(test, choices["mma"]["test"])
    res_s["mma_auto"] = pick(sel_llm, choices["mma"]["valid"])
    fixed = {k: int(sel[k].rewards.mean(0).argmax()) for k in menus}
    res_t["best_fixed_route"], res_s["best_fixed_route"] = pick(test, fixed), pick(sel, fixed)
    res_t["oracle_route"] = {k: br.rewards.max(1) for k, br in test.items()}
    g, g_sh, g_sel = gate_choices(learned["gate"], fit, sel, test, seed)
    res_t["learned_gate"], res_t["learned_gate_shuffled"] = pick(test, g), pick(test, g_sh)
    res_s["learned_gate"] = pick(sel, g_sel)
    info["gate"] = {"l2_scores": learned["l2_scores"], "l2": learned["gate"].l2,
                    "warm_start": {bucket_key(k): v for k, v in learned["source"].items()}}  # fmt: skip
    t0 = time.perf_counter()
    res_t.update(llm_ablations(routed["mma"], choices["mma"]["test"], fit, sel_llm, test, menus, learned, cfg,
                               seed, out, reuse))  # fmt: skip
    info["ablation_seconds"] = time.perf_counter() - t0
    mma_s, mma_t = choices["mma"]["valid"], choices["mma"]["test"]
    w = max((0.5, 1.0, 2.0), key=lambda w: np.mean(np.concatenate(list(
        interactive_ndcg(store, sel_llm, menus, mma_s, w).values()))))  # fmt: skip
    info["clarify_weight"] = w
    res_t["mma_interactive"] = interactive_ndcg(store, test, menus, mma_t, w)
    res_t["random_order"], res_s["random_order"] = random_ndcg(test, seed), random_ndcg(sel, seed)
    built = [t for b in learned["built"].values() for t in b["tools"]]
    readers = [t for t in routed["mma"].env.tools if t == LLM_RANK or t in built]
    for t in [*readers, "keyword"] if readers else []:  # does an LLM read text better than keyword overlap?
        if t in routed["mma"].env.tools:
            res_t[f"{t}_alone"] = single_tool_ndcg(test, t)
    for name, d in zoo_ndcg(scorers, test).items():
        res_t[name] = d
    for name, d in zoo_ndcg(scorers, sel).items():
        res_s[name] = d
    return res_t, res_s, info


def conditions(res: dict, sources: list[str]) -> dict[str, dict[str, list[float]]]:
    """Bucket-keyed results → the report's conditions: ``ooma:<src>`` and ``fixed_pool``."""
    out: dict[str, dict[str, list[float]]] = {}
    for (src,) in ooma_patterns(sources):
        out[f"ooma:{src}"] = {m: v[("target_positive", (src,))].tolist() for m, v in res.items()
                              if ("target_positive", (src,)) in v}  # fmt: skip
    full = ("fixed", tuple(sources))
    out["fixed_pool"] = {m: v[full].tolist() for m, v in res.items() if full in v}
    return out


def run_seed(seed: int, cfg: MMAConfig, runs: dict, store: EvidenceStore, retriever, out: Path,
             reuse_policy: bool = False) -> dict:  # fmt: skip
    from metamodal.train.masked_scores import MaskedRunScorer

    t_seed = time.perf_counter()
    fit_e, sel_e, test_e, short = seed_episodes(seed, cfg, runs[cfg.retriever], store, retriever)
    if short:
        log(f"seed {seed}: held-out interactions left out, too few negatives to fill a pool: {short}")
    scorers = {n: MaskedRunScorer(r, {m: store.group_of(m) for m in r.modalities}) for n, r in runs.items()}
    rule = cfg.fusion_tool_choice
    models, means = choose_tool_models(scorers, cfg.retriever, sel_e, cfg.fusion_tools, rule)
    log(f"fusion tools ({rule}): " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()) + f" -> {models}")
    seed_dir = out / f"seed{seed}"
    env, ranker, built = seed_env(store, scorers, models, fit_e, cfg, seed_dir, seed, reuse_policy,
                                  runs[cfg.retriever])  # fmt: skip
    tools = list(env.tools)
    fit, sel, test = (observe_rows(env, e) for e in (fit_e, sel_e, test_e))
    log(f"seed {seed}: rows fit {sum(map(len, fit.values()))}, select "
        f"{sum(map(len, sel.values()))}, test {sum(map(len, test.values()))} "
        f"({time.perf_counter() - t_seed:.0f} s)")  # fmt: skip
    codec = StatsCodec(tools).fit([st for br in fit.values() for st in br.stats])
    for rows in (fit, sel, test):
        render_rows(rows, codec)
    menus = make_menus(fit, sel, tools, cfg.menu_size)
    for rows in (fit, sel, test):
        score_rows(rows, menus, tools)
    t0 = time.perf_counter()
    learned, summary = train_router(fit, sel, menus, cfg, seed, seed_dir, reuse_policy)
    learned["built"] = built
    save_router(seed_dir / "router.json", tools, models, codec, menus, summary, ranker, built)
    routed = {kind: RoutedReranker.load(seed_dir, env, kind, share_trunk=True) for kind in KINDS}
    policy_s = time.perf_counter() - t0
    res_t, res_s, info = method_rewards(store, scorers, fit, sel, test, menus, routed, learned, cfg,
                                        seed, seed_dir, reuse_policy)  # fmt: skip
    write_rankings(seed_dir / "rankings.json", {"valid": info.pop("select_llm"), "test": test},
                   routed, info.pop("choices"), runs[cfg.retriever].ds)  # fmt: skip
    sources = store.sources()
    per_episode = conditions(res_t, sources)
    for c, d in per_episode.items():
        log(f"seed {seed}: {c}: " + ", ".join(f"{m} {np.mean(v):.4f}" for m, v in d.items()))
    return {
        "seed": seed, "per_episode": per_episode,
        "validation": {c: {m: float(np.mean(v)) for m, v in d.items()}
                       for c, d in conditions(res_s, sources).items()},
        "fusion_tools": models, "tools": tools,
        "menus": {bucket_key(k): [r.label() for r in m.routes] for k, m in menus.items()},
        "rulerouter": {bucket_key(k): m.routes[m.rr].label() for k, m in menus.items()},
        "example_prompts": [br.prompts[0] for br in list(test.values())[:3]],
        "policy": summary, "policy_seconds": policy_s + info.pop("ablation_seconds"),
        "built_tools": built,
        "gate": info["gate"], "clarify_weight": info["clarify_weight"],
        "seconds": time.perf_counter() - t_seed,
    }  # fmt: skip


def train_router(fit: Rows, sel: Rows, menus: dict, cfg: MMAConfig, seed: int, seed_dir: Path,
                 reuse_policy: bool) -> tuple[dict, dict]:  # fmt: skip
    """The learned gate, the LLM router's warm-start targets from it, the LLM router trained on
    them (+ the RL stage) and the adapter chosen on select: (what was learned, its summary)."""
    gate, l2_scores = fit_seed_gate(fit, sel)
    targets, source = warm_targets(gate, fit, sel, menus, cfg, seed)
    log(f"seed {seed}: warm start from " + ", ".join(f"{bucket_key(k)} {v}" for k, v in source.items()))
    learned = {"gate": gate, "l2_scores": l2_scores, "targets": targets, "source": source,
               "select_llm": subsample(sel, cfg.select_llm_rows, seed)}  # fmt: skip
    summary = train_llm(fit, menus, learned, cfg, seed, seed_dir, "stats", reuse_policy)
    summary, learned["mma_valid"] = choose_adapter(summary, learned["select_llm"], "stats")
    log(f"seed {seed}: MMA's adapter, chosen on select: {summary['adapter_name']} "
        f"({', '.join(f'{k} {v:.4f}' for k, v in summary['adapter_select'].items())})")  # fmt: skip
    return learned, summary
