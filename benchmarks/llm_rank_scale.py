"""Does ``llm_rank`` (the policy LM reading keyword summaries, pointwise or listwise) rank
better when it trains on thousands of episodes — what a GPU affords — than on the CPU
default's 600? Three steps, so that the LM's work can run on a GPU machine that has neither
Ray nor the data, while episodes and scoring stay the platform's own:

    # 1. here: one seed's episodes of a finished ``metamodal mma run`` (zoo reused), in one mode
    python benchmarks/llm_rank_scale.py export --run runs/mma/lfm2k_v2 --mode listwise \
        --dataset ../shared/data/lfm2k --seed 1 --rows .gpu/rows.json.gz --keep runs/llm_rank_scale
    # 2. anywhere (GPU when present): train each variant single-process, score the episodes
    python benchmarks/llm_rank_scale.py train --rows .gpu/rows.json.gz --out DIR
    # 3. here: NDCG@10 through the run's fusion rule, against the keyword and text tools
    python benchmarks/llm_rank_scale.py evaluate --keep runs/llm_rank_scale --rows .gpu/rows.json.gz --scores DIR \
        --out benchmarks/results/llm_rank_scale_lfm2k_h200

Training rows are the fit episodes' (validation users' first half; pointwise two per episode),
the variant is chosen on the select episodes (the other half), and test is reported; every
variant trains with the run's own trainer pieces (``menu_net.stage_loss``: SFT on the right
letter, then the exact expected reward with a KL to it), single-process with AdamW instead of
Ray Train + DeepSpeed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import time
from pathlib import Path

import numpy as np

# (name, training episodes (None: all), LoRA layers (0: every layer), SFT epochs, RL epochs)
VARIANTS = [
    ("cpu_default", 600, 4, 6, 2),
    ("all_rows", None, 4, 3, 1),
    ("all_rows_all_layers", None, 0, 2, 1),
]


def export(a: argparse.Namespace) -> None:
    from metamodal.agent.config import MMAConfig
    from metamodal.agent.episode_sets import seed_episodes
    from metamodal.agent.evidence import EvidenceStore
    from metamodal.agent.llm_rank import episode_prompts, training_rows
    from metamodal.agent.run import FirstStageScores, train_zoo
    from metamodal.agent.tools import tools_for

    cfg = MMAConfig(**json.loads((a.run / "config.json").read_text()))
    runs = train_zoo(str(a.dataset), a.run, cfg)
    retriever = FirstStageScores(runs[cfg.retriever])
    store = EvidenceStore.build(runs[cfg.retriever].ds, graph_items=retriever.items, heads=cfg.heads)
    fit_e, sel_e, test_e, _ = seed_episodes(a.seed, cfg, runs[cfg.retriever], store, retriever)
    prompts, onehot, sizes = training_rows(store, fit_e, 10**9, a.seed, a.mode)
    tools = tools_for(store)
    evals, kept = [], []
    for part, eps in (("select", sel_e), ("test", test_e)):
        for ep in eps:
            ev = store.view(ep)
            got = episode_prompts(ev, a.mode) if ep.pool_kind == "target_positive" else None
            if got is None:
                continue
            evals.append({"prompts": got[1], "sizes": got[2], "n": len(ep.pool)})
            results = {t: tools[t](ev) for t in ("keyword", "text") if t in tools}
            kw = ev.keywords(got[0])
            kept.append({"part": part, "ep": ep, "results": results,
                         "no_keywords": np.array([not kw[i] for i in ep.pool])})  # fmt: skip
    a.rows.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(a.rows, "wt") as f:
        json.dump({"train": {"prompts": prompts, "targets": onehot.argmax(1).tolist(), "sizes": sizes.tolist()},
                   "eval": evals, "seed": a.seed, "mode": a.mode}, f)  # fmt: skip
    a.keep.mkdir(parents=True, exist_ok=True)
    (a.keep / "episodes.pkl").write_bytes(pickle.dumps(kept))
    print(f"{len(prompts)} training rows, {len(evals)} evaluation episodes -> {a.rows}")


def train_variant(rows: dict, name: str, n_rows, layers: int, bc: int, rl: int, seed: int, out: Path) -> dict:
    """Train one variant single-process (the run's loss pieces) and read every evaluation
    episode's windows; returns timings, writes ``{name}_{stage}.npz`` of window log-probs."""
    import torch

    from metamodal.agent.llm_rank import ANSWER, POINT_ANSWER, POINT_LETTERS, WINDOW
    from metamodal.agent.menu_net import (
        MenuPolicyConfig,
        build_menu_net,
        stage_loss,
        trunk_dtype_name,
        warm_reference,
    )
    from metamodal.llm import materialise

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    point = rows["mode"] == "pointwise"
    letters = POINT_LETTERS if point else WINDOW
    cfg = MenuPolicyConfig(model=materialise(), train_layers=layers, seed=seed, bc_epochs=bc, rl_epochs=rl,
                           answer=POINT_ANSWER if point else ANSWER)  # fmt: skip
    n = len(rows["prompts"])
    per_episode = 2 if point else 1  # pointwise: the target's row and a negative's
    pick = np.sort(np.random.default_rng([seed, 5]).permutation(n)[: (n_rows and per_episode * n_rows) or n])
    tr = {"sizes": np.array(rows["sizes"])[pick], "q": np.zeros((len(pick), letters), np.float32)}
    tr["q"][np.arange(len(pick)), np.array(rows["targets"])[pick]] = 1.0
    tr.update(rewards=tr["q"], reward_scale=1.0)  # ``ref``: the warm start's, before RL
    dtype = trunk_dtype_name(cfg.trunk_dtype, dev)
    mn = build_menu_net(cfg, letters, dtype)
    mn.net.to(dev)
    t0 = time.perf_counter()
    states = mn.encode([rows["prompts"][i] for i in pick], batch=128)
    timing = {"rows": len(pick), "device": str(dev), "trunk_dtype": str(mn.trunk_dtype).removeprefix("torch."),
              "cache_s": time.perf_counter() - t0}  # fmt: skip
    for stage, epochs, lr in (("bc", bc, cfg.bc_lr), ("rl", rl, cfg.rl_lr)):
        if stage == "rl":
            tr["ref"] = warm_reference(mn, states, tr["sizes"])
        t0 = time.perf_counter()
        opt = torch.optim.AdamW([p for p in mn.net.parameters() if p.requires_grad], lr=lr)
        rng, losses = np.random.default_rng([seed, len(stage)]), []
        mn.net.train()
        for _ in range(epochs):
            order = rng.permutation(len(states))
            for s in range(0, len(order) - cfg.batch + 1, cfg.batch):
                loss = stage_loss(mn, states, tr, order[s : s + cfg.batch], stage, cfg.beta)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        timing[f"{stage}_s"] = time.perf_counter() - t0
        timing[f"{stage}_loss_first_last"] = [float(np.mean(losses[:20])), float(np.mean(losses[-50:]))]
        t0 = time.perf_counter()
        mn.forget_read_outs()
        scores = read_episodes(mn, rows["eval"], point)
        timing[f"{stage}_read_s"] = time.perf_counter() - t0
        np.savez_compressed(out / f"{name}_{stage}.npz", *scores)
        print(f"{name} {stage}: {json.dumps(timing)}", flush=True)
    return timing


def read_episodes(mn, evals: list[dict], point: bool) -> list[np.ndarray]:
    """Each evaluation episode's candidate scores, as the tool reads them: log p(match) of
    each candidate's prompt, or its letter's log-probability window by window."""
    from metamodal.agent.llm_rank import window_sizes

    prompts, sizes = [], []
    for e in evals:
        prompts += e["prompts"]
        sizes += e.get("sizes") or window_sizes(e["n"])  # exports before the modes: listwise
    p = mn.probs(prompts, sizes, batch=128, what="llm_rank")
    out, r = [], 0
    for e in evals:
        k = len(e["prompts"])
        if point:
            out.append(np.log(p[r : r + k, 0] + 1e-12))
        else:
            out.append(np.concatenate([np.log(p[r + j, : sizes[r + j]] + 1e-12) for j in range(k)]))
        r += k
    return out


def prompt_overlap(prompts: list[str], rng: np.random.Generator) -> np.ndarray:
    """A control that reads exactly what the LM reads: each candidate line's words found in the
    profile line (ties broken at random, not by pool order). It says how much ranking signal
    the prompt itself carries (pointwise: each prompt's one item line)."""
    from metamodal.agent.menu_net import SHARED

    scores = []
    for p in prompts:
        lines = p.replace(SHARED, "").split("\n")
        at = next(i for i, line in enumerate(lines) if line.startswith("liked ("))
        profile = set(lines[at].split(": ", 1)[1].split())
        items = [line for line in lines[at + 1 :] if line.startswith("item:")] or lines[at + 1 :]
        scores += [len(profile & set(line.split(":", 1)[1].split())) for line in items]
    return np.array(scores, np.float64) + 1e-6 * rng.random(len(scores))


def load_rows(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        rows = json.load(f)
    rows.setdefault("mode", "listwise")  # exports before the modes
    return rows


def train(a: argparse.Namespace) -> None:
    import torch

    rows = load_rows(a.rows)
    rows["prompts"], rows["targets"], rows["sizes"] = (rows["train"][k] for k in ("prompts", "targets", "sizes"))
    a.out.mkdir(parents=True, exist_ok=True)
    info = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "variants": {}}
    for name, n_rows, layers, bc, rl in VARIANTS:
        if a.only and name not in a.only:
            continue
        info["variants"][name] = {"layers_with_lora": layers or "all", "bc_epochs": bc, "rl_epochs": rl,
                                  **train_variant(rows, name, n_rows, layers, bc, rl, rows["seed"], a.out)}  # fmt: skip
        (a.out / "timings.json").write_text(json.dumps(info, indent=2))


def evaluate(a: argparse.Namespace) -> None:
    from metamodal.agent.episodes import pool_ndcg
    from metamodal.agent.llm_rank import NAME
    from metamodal.agent.menu_net import LETTERS
    from metamodal.agent.routes import Route
    from metamodal.agent.tools import result_of
    from metamodal.eval.paired import paired_wilcoxon
    from metamodal.eval.tables import markdown_table
    from metamodal.rundir import write_json

    kept = pickle.loads((a.keep / "episodes.pkl").read_bytes())
    rows = load_rows(a.rows)
    timings = json.loads((a.scores / "timings.json").read_text())

    def ndcg_of(tool: str, results_of) -> np.ndarray:
        return np.array([pool_ndcg(Route.of({tool: 1.0}).scores(results_of(i, k), None, len(k["ep"].pool)), k["ep"])
                         for i, k in enumerate(kept)])  # fmt: skip

    methods = {t: ndcg_of(t, lambda i, k: k["results"]) for t in ("keyword", "text") if t in kept[0]["results"]}
    rng = np.random.default_rng(0)
    methods["random_order"] = np.array([pool_ndcg(rng.random(len(k["ep"].pool)), k["ep"]) for k in kept])
    methods["prompt_overlap"] = np.array([pool_ndcg(prompt_overlap(e["prompts"], rng), k["ep"])
                                          for e, k in zip(rows["eval"], kept, strict=True)])  # fmt: skip
    letter_share = {}
    for f in sorted(a.scores.glob("*.npz")):
        z = np.load(f)
        s = [z[f"arr_{i}"] for i in range(len(kept))]
        top = np.bincount([int(np.argmax(x)) for x in s])
        if rows["mode"] == "listwise":  # a pointwise prompt holds one candidate
            letter_share[f"llm_rank_{f.stem}"] = {"letter": LETTERS[int(top.argmax())], "share": float(top.max() / len(s))}

        def with_llm(i, k, s=s):
            sc = s[i].copy()
            sc[k["no_keywords"]] = np.nan
            return {**k["results"], NAME: result_of(NAME, sc)}

        methods[f"llm_rank_{f.stem}"] = ndcg_of(NAME, with_llm)
        if f.stem in {k.removeprefix("llm_rank_") for k in letter_share} and len({len(x) for x in s}) == 1:
            # the control: its mean score per letter, whatever it reads
            bias = [np.mean(np.stack(s), 0)] * len(kept)
            methods[f"letters_only_{f.stem}"] = ndcg_of(NAME, lambda i, k, b=bias: with_llm(i, k, s=b))
    part = np.array([k["part"] for k in kept])
    task = np.array([k["ep"].task for k in kept])
    llm = [m for m in methods if m.startswith("llm_rank_")]
    chosen = max(llm, key=lambda m: methods[m][part == "select"].mean())
    test = part == "test"
    table = []
    for m, v in sorted(methods.items(), key=lambda kv: -kv[1][test].mean()):
        row = {"method": m, "select": float(v[part == "select"].mean()), "test": float(v[test].mean()),
               **{t: float(v[test & (task == t)].mean()) for t in sorted(set(task))}}  # fmt: skip
        row["vs_keyword_test"] = paired_wilcoxon(v[test], methods["keyword"][test])
        table.append(row)
    res = {"mode": rows["mode"], "chosen_on_select": chosen, "episodes": {"select": int((~test).sum()), "test": int(test.sum())},
           "most_chosen_letter": letter_share, "timings": timings, "table": table}  # fmt: skip
    write_json(a.out.with_suffix(".json"), res, indent=2)
    tasks = sorted(set(task))
    md = markdown_table(
        ["method", "select", "test", *tasks, "test − keyword (p)"],
        [[r["method"] + (" (chosen)" if r["method"] == chosen else ""), f"{r['select']:.4f}", f"{r['test']:.4f}",
          *(f"{r[t]:.4f}" for t in tasks),
          f"{r['vs_keyword_test']['mean_diff']:+.4f} ({r['vs_keyword_test']['wilcoxon_p']:.2g})"] for r in table],
    )  # fmt: skip
    bias = "; ".join(f"`{m}` {v['letter']} {v['share']:.0%}" for m, v in letter_share.items())
    mode = rows["mode"]
    tail = f"Each variant's most chosen letter (share of episodes): {bias}.\n" if bias else ""
    a.out.with_suffix(".md").write_text(f"# llm_rank ({mode}) at scale (NDCG@10, episodes where text is observed)"
                                        f"\n\n{md}\n\n{tail}")
    print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export")
    e.add_argument("--run", type=Path, required=True)
    e.add_argument("--dataset", type=Path, required=True)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--mode", choices=["pointwise", "listwise"], default="pointwise")
    e.add_argument("--rows", type=Path, required=True)
    e.add_argument("--keep", type=Path, required=True)
    t = sub.add_parser("train")
    t.add_argument("--rows", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--only", nargs="*", help="variants to train (default: all)")
    v = sub.add_parser("evaluate")
    v.add_argument("--keep", type=Path, required=True)
    v.add_argument("--rows", type=Path, required=True, help="the export's rows (the prompts read)")
    v.add_argument("--scores", type=Path, required=True)
    v.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    {"export": export, "train": train, "evaluate": evaluate}[a.step](a)


if __name__ == "__main__":
    main()
