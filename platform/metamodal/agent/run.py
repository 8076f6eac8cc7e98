"""``metamodal mma run``: train (or reuse) the zoo models MMA sits behind and compares with,
build episodes, fit RuleRouter-Fuse, train the policy per seed, and evaluate the four evidence
checks into ``DIR/report.json`` (+ Markdown and plots, ``metamodal.agent.report``).

Data roles — nothing is tuned on test:
- zoo models train on the split's training part (with ``cold_item_frac`` of the items cold);
- validation users are halved: *fit* users' episodes train the policy, *select* users' episodes
  fit RuleRouter-Fuse and choose λ (and MMA-Interactive's clarification weight);
- test episodes are only scored.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from metamodal.agent.actions import parse
from metamodal.agent.baselines import BaselineScorer
from metamodal.agent.config import MMAConfig
from metamodal.agent.env import AgentEnv, Step
from metamodal.agent.episodes import TASKS, Episode, EpisodeBuilder, PoolConfig, pool_ndcg
from metamodal.agent.evidence import EvidenceStore
from metamodal.agent.fusion import fuse
from metamodal.agent.rulerouter import LAMBDA_GRID, RuleRouter
from metamodal.agent.sampler import BalancedSampler
from metamodal.agent.tools import Tool, clarify_tool, model_tool, tools_for
from metamodal.data.missing import ooma_patterns
from metamodal.train.artifacts import TrainedRun, load_run
from metamodal.train.config import ConfigError


def log(msg: str) -> None:
    print(f"[mma] {msg}", flush=True)


def train_zoo(dataset: str, out: Path, cfg: MMAConfig) -> dict[str, TrainedRun]:
    """The retriever and the baselines, trained with the same cold items; a finished run with
    the same configuration is reused."""
    from metamodal.train.runner import run_training

    runs = {}
    overrides = [f"missing.cold_item_frac={cfg.cold_item_frac}", *cfg.zoo_overrides]
    for name in dict.fromkeys([cfg.retriever, *cfg.baselines]):
        d = out / "zoo" / name
        done = (d / "results.json").is_file()
        if done:
            log(f"zoo {name}: reusing {d}")
        else:
            log(f"zoo {name}: training")
            run_training(name, dataset, d, overrides, overwrite=True)
        runs[name] = load_run(d)
    return runs


class Retriever:
    """First-stage scores from the retriever's vectors: a warm user's own vector, or the mean of
    a (short) history's item vectors."""

    def __init__(self, run: TrainedRun) -> None:
        net = run.build()
        u, i = (t.detach().numpy().astype(np.float64) for t in net.vectors())
        self.users, self.items = u, i

    def user_scores(self, u: int) -> np.ndarray:
        return self.items @ self.users[u]

    def history_scores(self, hist: np.ndarray) -> np.ndarray:
        if not len(hist):
            return np.zeros(len(self.items))
        return self.items @ self.items[hist].mean(0)


def split_users(users: np.ndarray, seed: int) -> tuple[set[int], set[int]]:
    perm = np.random.default_rng(seed).permutation(np.unique(users))
    half = len(perm) // 2
    return set(perm[:half].tolist()), set(perm[half:].tolist())


def episodes_for(
    b: EpisodeBuilder, part: str, users: set[int] | None, per_task: int, full: tuple, seed: int
) -> dict[str, list[Episode]]:
    out = {}
    for task in TASKS:
        eps = b.target_positive_part(part, task, full, limit=None, seed=seed)
        if users is not None:
            eps = [e for e in eps if e.user in users]
        rng = np.random.default_rng([seed, TASKS.index(task), 7])
        keep = rng.permutation(len(eps))[:per_task]
        out[task] = [eps[i] for i in sorted(keep)]
    return {t: e for t, e in out.items() if e}


def mma_scores(env: AgentEnv, steps: list[Step], completions: list[str], lam: float):
    actions = [env.parse(s, c) for s, c in zip(steps, completions, strict=True)]
    return [env.scores(s, a, lam) for s, a in zip(steps, actions, strict=True)], actions


def same_action(env: AgentEnv, a: str, b: str) -> bool:
    tools = list(env.tools)
    x, y = parse(a, tools, tools), parse(b, tools, tools)
    return x.calls == y.calls and all(
        abs(x.weights.get(t, 0) - y.weights.get(t, 0)) < 0.051 for t in x.calls
    )


def choose_lambda(env: AgentEnv, steps: list[Step], completions: list[str]) -> float:
    best, best_n = 0.5, -1.0
    for lam in LAMBDA_GRID:
        scores, _ = mma_scores(env, steps, completions, lam)
        n = float(np.mean([pool_ndcg(s, st.ep) for s, st in zip(scores, steps, strict=True)]))
        if n > best_n + 1e-12:
            best, best_n = lam, n
    return best


def interactive_scores(
    env: AgentEnv, clarify: Tool, steps: list[Step], completions: list[str], lam: float, w: float
) -> list[np.ndarray]:
    """MMA-Interactive: MMA-Auto's action plus the clarification tool's answer at weight ``w``."""
    out = []
    for s, c in zip(steps, completions, strict=True):
        a = env.parse(s, c)
        res = {**s.results, "clarify": clarify(env.store.view(s.ep))}
        weights = {**{t: a.weights.get(t, 0.0) for t in a.calls}, "clarify": w}
        out.append(fuse(res, weights, s.first, lam, len(s.ep.pool)))
    return out


def agent_env(
    store: EvidenceStore, scorers: dict[str, BaselineScorer], tool_model: str | None
) -> AgentEnv:
    """The tool registry, with ``tool_model``'s masked scores as the ``fusion`` tool if any."""
    extra = {"fusion": model_tool(scorers[tool_model])} if tool_model else {}
    return AgentEnv(store, tools_for(store, extra=extra))


def choose_tool_model(
    choice: str | None, scorers: dict[str, BaselineScorer], eps: list[Episode]
) -> str | None:
    """The zoo model behind the ``fusion`` tool: named, or (``auto``) the one whose masked scores
    rank the *select* episodes best (validation users; the same patterns the router sees)."""
    if choice in (None, "none"):
        return None
    if choice != "auto":
        if choice not in scorers:
            raise ValueError(
                f"tool_model {choice!r} is not among the trained models {list(scorers)}"
            )
        return choice
    means = {n: float(np.mean([pool_ndcg(sc.scores(ep), ep) for ep in eps]))
             for n, sc in scorers.items()}  # fmt: skip
    best = max(means, key=means.get)
    log("fusion tool: " + ", ".join(f"{n} {v:.4f}" for n, v in means.items()) + f" -> {best}")
    return best


def run_seed(
    seed: int,
    cfg: MMAConfig,
    runs: dict[str, TrainedRun],
    store: EvidenceStore,
    retriever: Retriever,
    out: Path,
    reuse_policy: bool = False,
) -> dict:
    """One seed: episodes, RuleRouter-Fuse, policy training, and every method's per-episode
    NDCG@10 on the OOMA conditions and the fixed pools. ``reuse_policy``: a policy this seed
    already trained under the same configuration is loaded instead of trained again."""
    from metamodal.agent.policy import Policy, load_model, load_tokenizer
    from metamodal.agent.train_policy import train_policy

    run = runs[cfg.retriever]
    ds, split = run.ds, run.split
    sources = store.sources()
    full = tuple(sources)
    pool_cfg = PoolConfig(cfg.pool_size, cfg.fixed_k, cold_history=cfg.cold_history, seed=seed)
    b = EpisodeBuilder(
        ds, split, retriever.user_scores, retriever.history_scores, run.miss, pool_cfg
    )
    fit_u, select_u = split_users(ds.interactions.user[split.valid], seed)
    fit = episodes_for(b, "valid", fit_u, cfg.fit_episodes, full, seed)
    select = episodes_for(b, "valid", select_u, cfg.select_episodes, full, seed)
    test = episodes_for(b, "test", None, cfg.test_episodes, full, seed)
    log(f"seed {seed}: episodes fit {sum(map(len, fit.values()))}, select "
        f"{sum(map(len, select.values()))}, test {sum(map(len, test.values()))}")  # fmt: skip
    scorers = {name: BaselineScorer(r, {n: store.group_of(n) for n in r.modalities})
               for name, r in runs.items()}  # fmt: skip
    sel_sampler = BalancedSampler(select, sources, seed)  # four whole cycles of the buckets
    sel_eps = [ep for _, ep in sel_sampler.batch(4 * len(sel_sampler.buckets))]
    tool_model = choose_tool_model(cfg.tool_model, scorers, sel_eps)
    env = agent_env(store, scorers, tool_model)
    clarify = clarify_tool(store)
    sel_steps = [env.observe(ep) for ep in sel_eps]
    rr = RuleRouter.fit([(s.ep, s.results, s.first) for s in sel_steps], list(env.tools))
    env.lam = rr.lam
    log(f"seed {seed}: RuleRouter-Fuse weights {rr.weights}, λ {rr.lam}")

    sampler = BalancedSampler(fit, sources, seed)
    n_grpo = cfg.policy.grpo_steps * cfg.policy.prompts_per_step
    fit_steps = [env.observe(ep) for _, ep in sampler.batch(max(cfg.bc_steps, n_grpo))]
    pcfg = cfg.policy.model_copy(update={"seed": seed})
    summary = trained_policy(out / f"seed{seed}") if reuse_policy else None
    if summary is not None:
        train_s = float(summary["seconds"])
        log(f"seed {seed}: reusing the policy trained in {train_s:.0f} s ({summary['adapter']})")
    else:
        t0 = time.perf_counter()
        summary = train_policy(env, fit_steps, out / f"seed{seed}" / "policy", pcfg, rr.weights)
        train_s = time.perf_counter() - t0
        log(f"seed {seed}: policy trained in {train_s:.0f} s")

    from peft import PeftModel

    tok = load_tokenizer(summary["base_model"])
    net = PeftModel.from_pretrained(load_model(summary["base_model"]), summary["adapter"])
    policy = Policy(net, tok, cfg.policy.max_new_tokens)
    sel_completions = policy.complete([s.prompt for s in sel_steps])
    lam = choose_lambda(env, sel_steps, sel_completions)
    # a fixed pool is the retriever's own top-K, where its order is worth more than against a
    # target-positive pool's hard negatives, and where another zoo model may rank best: the
    # fusion tool's model and λ for fixed pools are chosen on validation fixed pools (the
    # select users'), for MMA and RuleRouter-Fuse alike
    sel_fixed_eps = [e for u in sorted(select_u)[: cfg.select_episodes]
                     if (e := b.fixed(int(u), "valid", full)) is not None]  # fmt: skip
    tool_model_fixed = choose_tool_model(cfg.tool_model, scorers, sel_fixed_eps)
    env_fixed = (
        env if tool_model_fixed == tool_model else agent_env(store, scorers, tool_model_fixed)
    )
    sel_fixed = [env_fixed.observe(e) for e in sel_fixed_eps]
    lam_fixed = choose_lambda(env_fixed, sel_fixed, policy.complete([s.prompt for s in sel_fixed]))
    rr_fixed = RuleRouter(dict(rr.weights), rr.lam)
    rr_fixed.lam = max(LAMBDA_GRID, key=lambda x: RuleRouter(rr.weights, x).mean_ndcg(
        [(s.ep, s.results, s.first) for s in sel_fixed]))  # fmt: skip
    log(f"seed {seed}: λ target-positive {lam}, fixed pools {lam_fixed} (RuleRouter-Fuse "
        f"{rr.lam}, {rr_fixed.lam})")  # fmt: skip
    targets = summary.get("bc_pairs", [])  # does greedy decoding reproduce the warm start?
    said = policy.complete([p for p, _, _ in targets])
    agree = [same_action(env, c, t) for (_, t, _), c in zip(targets, said, strict=True)]
    w_clar = max(
        (0.5, 1.0, 2.0),
        key=lambda w: np.mean([pool_ndcg(x, s.ep) for x, s in zip(
            interactive_scores(env, clarify, sel_steps, sel_completions, lam, w), sel_steps,
            strict=True)]),
    )  # fmt: skip

    conditions: dict[str, list[Step]] = {}
    test_eps = [ep for eps in test.values() for ep in eps]
    for (src,) in ooma_patterns(sources):
        conditions[f"ooma:{src}"] = [env.observe(ep.with_available((src,))) for ep in test_eps]
    users = np.unique(ds.interactions.user[split.test])
    users = np.random.default_rng(seed).permutation(users)[: cfg.fixed_users]
    fixed = [e for u in sorted(users) if (e := b.fixed(int(u), "test", full)) is not None]
    conditions["fixed_pool"] = [env_fixed.observe(ep) for ep in fixed]

    per_episode: dict[str, dict[str, list[float]]] = {}
    usage: dict[str, dict[str, float]] = {}
    for cond, steps in conditions.items():
        fixed_pool = cond == "fixed_pool"
        env_c, lam_c, rr_c = (env_fixed, lam_fixed, rr_fixed) if fixed_pool else (env, lam, rr)
        comp = policy.complete([s.prompt for s in steps])
        scores, actions = mma_scores(env_c, steps, comp, lam_c)
        res = {"mma_auto": [pool_ndcg(x, s.ep) for x, s in zip(scores, steps, strict=True)]}
        inter = interactive_scores(env_c, clarify, steps, comp, lam_c, w_clar)
        res["mma_interactive"] = [pool_ndcg(x, s.ep) for x, s in zip(inter, steps, strict=True)]
        res["rulerouter_fuse"] = [pool_ndcg(rr_c.scores(s.ep, s.results, s.first), s.ep)
                                  for s in steps]  # fmt: skip
        for name, sc in scorers.items():
            res[name] = [pool_ndcg(sc.scores(s.ep), s.ep) for s in steps]
        per_episode[cond] = res
        usage[cond] = {
            "calls": float(np.mean([len(a.calls) for a in actions])),
            "well_formed": float(np.mean([a.well_formed for a in actions])),
            "fallback": float(np.mean([a.fallback for a in actions])),
        }
        log(f"seed {seed}: {cond}: " + ", ".join(
            f"{k} {np.mean(v):.4f}" for k, v in res.items()))  # fmt: skip
    return {
        "seed": seed,
        "per_episode": per_episode,
        "usage": usage,
        "lambda": lam,
        "lambda_fixed": lam_fixed,
        "clarify_weight": w_clar,
        "rulerouter": {"weights": rr.weights, "lambda": rr.lam, "lambda_fixed": rr_fixed.lam},
        "bc_agreement": float(np.mean(agree)) if agree else None,
        "tool_model": tool_model,
        "tool_model_fixed": tool_model_fixed,
        "policy": summary,
        "policy_seconds": train_s,
        "distinct_prompts": len(policy.cache),
        "examples": {p: policy.cache[p] for p in list(policy.cache)[:5]},
    }


def trained_policy(seed_dir: Path) -> dict | None:
    """The summary of a policy this seed directory already holds (written after training; runs
    from before ``summary.json`` keep it in ``result.json``), or None if it holds none."""
    for f, key in (
        (seed_dir / "policy" / "summary.json", None),
        (seed_dir / "result.json", "policy"),
    ):
        if f.is_file():
            summary = json.loads(f.read_text())
            summary = summary.get(key) if key else summary
            if summary and Path(summary["adapter"]).is_dir():
                return summary
    return None


def run_mma(dataset: str, out: str | Path, cfg: MMAConfig, reevaluate: bool = False) -> dict:
    """``reevaluate``: with the same configuration, keep the trained policies and evaluate every
    seed again (after a change to evaluation or selection); otherwise finished seeds are kept."""
    from metamodal.agent.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    conf, wanted = out / "config.json", json.loads(json.dumps(cfg.model_dump()))
    same = conf.is_file() and json.loads(conf.read_text()) == wanted
    if reevaluate and not same:
        raise ConfigError(f"--reevaluate needs {conf} to hold this same configuration")
    conf.write_text(json.dumps(wanted, indent=2))
    t0 = time.perf_counter()
    runs = train_zoo(dataset, out, cfg)
    zoo_s = time.perf_counter() - t0
    run = runs[cfg.retriever]
    retriever = Retriever(run)
    store = EvidenceStore.build(run.ds, graph_items=retriever.items)
    log(f"evidence sources: {store.sources()}; tools: {list(tools_for(store))}")
    seeds, reused = [], []
    for seed in range(cfg.seeds):
        done = out / f"seed{seed}" / "result.json"
        if same and done.is_file() and not reevaluate:  # resume at the first unfinished seed
            log(f"seed {seed}: reusing {done} (same configuration)")
            seeds.append(json.loads(done.read_text()))
            reused.append(seed)
            continue
        seeds.append(run_seed(seed, cfg, runs, store, retriever, out, reuse_policy=same))
        done.write_text(json.dumps(seeds[-1], default=float))
    wall = time.perf_counter() - t0
    timing = {"zoo_seconds": zoo_s, "wall_seconds": wall, "reused_seeds": reused,
              "reevaluated": reevaluate}  # fmt: skip
    return write_report(out, dataset, cfg, seeds, timing)
