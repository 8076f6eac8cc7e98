"""``keyword_llm`` inside a ``seq run`` seed: its prompts (neighbours from the seed's SASRec),
its training on Ray Train, and its per-user metrics on the seed's test users and negatives — a
sample of the users when ``llm.eval_users`` says so (the other users' entries are NaN, and
every comparison pairs on the users it read)."""

from __future__ import annotations

import numpy as np
import torch

from metamodal.agent.menu_net import LETTERS
from metamodal.seq.llm_rec import (
    ANSWER,
    ItemKeywords,
    Neighbours,
    PromptMaker,
    evaluate_llm,
    reconstruction_rows,
    training_rows,
)
from metamodal.seq.sequences import padded


def _states(model, histories: list[np.ndarray], max_len: int) -> np.ndarray:
    x = padded(histories, max_len)
    return np.concatenate([model.states(torch.from_numpy(x[s : s + 512])).numpy() for s in range(0, len(x), 512)])


def _first_stage(model, histories: list[np.ndarray], max_len: int) -> np.ndarray:
    s = np.concatenate([model.scores(torch.from_numpy(padded(histories[i : i + 512], max_len))).numpy()
                        for i in range(0, len(histories), 512)]).astype(np.float64)  # fmt: skip
    for r, h in enumerate(histories):
        s[r, h] = -np.inf
    return s


def evaluate_keyword_llm(run, sasrec) -> tuple[dict, dict]:
    """({condition: {protocol: {metric: per-user array}}}, training facts)."""
    from metamodal.agent.menu_net import load_menu_policy
    from metamodal.agent.menu_policy import train_menu_policy
    from metamodal.seq.run import conditions

    cfg, seqs = run.cfg, run.seqs
    if not cfg.keywords:
        raise ValueError("keyword_llm needs keywords=DIR (a `metamodal keywords` run over this catalogue)")
    n = 1 + cfg.n_negatives
    if n > len(LETTERS) and cfg.llm.mode == "listwise":
        raise ValueError(f"keyword_llm reads at most {len(LETTERS)} candidates; n_negatives is {cfg.n_negatives}")
    kw = ItemKeywords.load(cfg.keywords, run.ds)
    max_len = cfg.sasrec.max_len
    make = PromptMaker(seqs, kw, Neighbours(_states(sasrec, seqs.train, max_len)))  # training items only
    prompts, rewards, sizes, by_task = _multi_task_rows(run, make, kw, n)
    pcfg = cfg.llm.policy.model_copy(update={"seed": run.seed, "answer": ANSWER})
    summary = train_menu_policy(prompts, rewards, sizes, rewards, run.dir / "keyword_llm", pcfg, reward_scale=1.0,
                                record={"mode": cfg.llm.mode})  # fmt: skip
    net = load_menu_policy(summary)
    k = len(run.users) if cfg.llm.eval_users is None else min(cfg.llm.eval_users, len(run.users))
    pick = np.sort(np.random.default_rng([run.seed, 7]).choice(len(run.users), k, replace=False))
    users, negs = run.users[pick], run.negatives[pick]
    first = _first_stage(sasrec, [seqs.history("test", int(u)) for u in users], max_len)
    got: dict = {}
    for c in conditions(run.content[2]):
        part = evaluate_llm(net, make, users, negs, c, first, run.seed, cfg.llm.mode)
        got[c] = {p: {m: _spread(v, pick, len(run.users)) for m, v in ms.items()} for p, ms in part.items()}
    facts = {"eval_users": int(k), "mode": cfg.llm.mode, "train_rows": len(prompts), "train_seconds": summary["seconds"],
             "rows_by_task": by_task,
             "bc_loss_first": summary["bc_loss_first"], "bc_loss_last": summary["bc_loss_last"]}  # fmt: skip
    return got, facts


def _multi_task_rows(run, make: PromptMaker, kw: ItemKeywords, n: int):
    """Next-item rows, then keyword-reconstruction rows (the menu trainer shuffles its rows), and
    how many of each."""
    cfg = run.cfg.llm
    parts = {"next_item": training_rows(make, cfg.train_rows, n, cfg.hide_p, run.seed, cfg.mode)}
    text = run.ds.modalities.get("text")
    if cfg.reconstruct_rows and text is not None:
        parts["reconstruct"] = reconstruction_rows(kw, text.texts, cfg.reconstruct_rows, min(n, len(LETTERS)),
                                                   cfg.hide_p, run.seed, cfg.mode)  # fmt: skip
    prompts = [p for part in parts.values() for p in part[0]]
    rewards = np.concatenate([p[1] for p in parts.values()])
    sizes = np.concatenate([p[2] for p in parts.values()])
    return prompts, rewards, sizes, {k: len(v[0]) for k, v in parts.items()}


def _spread(v: np.ndarray, pick: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[pick] = v
    return out
