"""What a pointwise ``llm_rank`` read-out of one pool costs: the pool's prompts read as whole
prompts (one forward over every prompt's tokens) against the shared-prefix read (the answer key
and profile once, then each candidate's line against their keys and values), on the packaged
SmolLM2-135M with a LoRA router's shape (``train_layers`` 4, LoRA at zero: the cost does not
depend on the weights), one process, alternating the two paths per pool.

    python benchmarks/llm_rank_read_cost.py --out benchmarks/results/llm_rank_read_cost_cpu.json \
        [--pools 12] [--threads 2] [--sizes 20,50]

Prompts are synthetic in the exact format ``episode_prompts`` writes: 12 profile words and 4
words a candidate, drawn from whole-word tokenizer entries (real keywords are sometimes several
tokens; the ratio is what the script reports). Writes FILE.json and FILE.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def vocabulary(tok, n: int = 3000) -> list[str]:
    words = [t[1:] for t in tok.get_vocab() if t.startswith("Ġ") and t[1:].isalpha() and t[1:].islower()]
    return sorted(w for w in words if 4 <= len(w) <= 9)[:n]


def pools(tok, n_pools: int, size: int, seed: int) -> list[list[str]]:
    from metamodal.agent.llm_rank import ITEM_WORDS, PROFILE_WORDS, pointwise_prompt

    words = vocabulary(tok)
    rng = np.random.default_rng([seed, size])
    out = []
    for _ in range(n_pools):
        profile = list(rng.choice(words, PROFILE_WORDS, replace=False))
        out.append([pointwise_prompt(profile, list(rng.choice(words, ITEM_WORDS, replace=False)))
                    for _ in range(size)])  # fmt: skip
    return out


def measure(mn, prompts: list[list[str]]) -> dict[str, list[float]]:
    """Milliseconds per pool, each path reading every pool afresh (memo cleared)."""
    from metamodal.agent.llm_rank import POINT_LETTERS
    from metamodal.agent.menu_net import SHARED

    ms: dict[str, list[float]] = {"whole": [], "shared": []}
    for pool in prompts:
        for path, ps in (("whole", [p.replace(SHARED, "") for p in pool]), ("shared", pool)):
            mn.forget_read_outs()
            t0 = time.perf_counter()
            mn.probs(ps, [POINT_LETTERS] * len(ps), what=f"{path} read")
            ms[path].append(1e3 * (time.perf_counter() - t0))
    return ms


def tokens(mn, pool: list[str]) -> dict[str, int]:
    from metamodal.agent.menu_net import SHARED

    whole = sum(len(mn._ids(p.replace(SHARED, ""))) for p in pool)
    prefix = len(mn.tok(pool[0].rpartition(SHARED)[0], add_special_tokens=False).input_ids)
    return {"whole": whole, "shared": prefix + sum(len(mn._ids(p)) - prefix for p in pool)}


def write_md(out: Path, res: dict) -> None:
    lines = ["# Pointwise `llm_rank`: a pool's read-out, whole prompts vs a shared prefix", "",
             "| pool | pools | tokens whole | tokens shared | whole ms (median) | shared ms (median) | speed-up |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for size, r in res["pools"].items():
        lines.append(f"| {size} | {len(r['whole_ms'])} | {r['tokens']['whole']} | {r['tokens']['shared']} | "
                     f"{np.median(r['whole_ms']):.0f} | {np.median(r['shared_ms']):.0f} | "
                     f"{np.median(r['whole_ms']) / np.median(r['shared_ms']):.2f}x |")  # fmt: skip
    lines += ["", f"torch threads {res['threads']}, trunk {res['trunk_dtype']}, model {res['model']}; "
              "LoRA at zero (a read-out's cost does not depend on the weights)."]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    import torch

    from metamodal.agent.llm_rank import POINT_ANSWER, POINT_LETTERS
    from metamodal.agent.menu_net import MenuPolicyConfig, build_menu_net, trunk_dtype_name

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pools", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="20,50")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = MenuPolicyConfig(answer=POINT_ANSWER)
    dtype = trunk_dtype_name("auto", torch.device("cpu"))
    mn = build_menu_net(cfg, POINT_LETTERS, dtype)
    res: dict = {"threads": a.threads, "trunk_dtype": dtype, "model": cfg.model, "pools": {}}
    for size in (int(s) for s in a.sizes.split(",")):
        ps = pools(mn.tok, a.pools, size, 0)
        measure(mn, ps[:1])  # warm-up
        ms = measure(mn, ps)
        res["pools"][str(size)] = {"whole_ms": ms["whole"], "shared_ms": ms["shared"], "tokens": tokens(mn, ps[0])}
        print(f"pool {size}: whole {np.median(ms['whole']):.0f} ms, shared {np.median(ms['shared']):.0f} ms")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    write_md(a.out, res)


if __name__ == "__main__":
    main()
