"""``keyword_llm`` inside a ``seq run`` seed: its prompts (neighbours from the seed's SASRec),
its training on Ray Train, and its per-user metrics on the seed's test users and negatives — a
sample of the users when ``llm.eval_users`` says so (the other users' entries are NaN, and
every comparison pairs on the users it read); and ``keyword_overlap``, its control over the
same prompts' words."""

from __future__ import annotations

import numpy as np
import torch

from metamodal.agent.menu_net import LETTERS
from metamodal.seq.keyword_overlap import overlap_scores
from metamodal.seq.llm_rec import (
    ANSWER,
    ItemKeywords,
    Neighbours,
    PromptMaker,
    evaluate_reader,
    llm_reader,
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


def _reader_setup(run, sasrec) -> tuple[ItemKeywords, PromptMaker]:
    """The item keywords and the prompt maker (neighbours by SASRec's user states over the
    training items only) that keyword_llm and its control share."""
    if not run.cfg.keywords:
        raise ValueError("keyword_llm and keyword_overlap need keywords=DIR (a `metamodal keywords` run over this catalogue)")  # fmt: skip
    kw = ItemKeywords.load(run.cfg.keywords, run.ds)
    return kw, PromptMaker(run.seqs, kw, Neighbours(_states(sasrec, run.seqs.train, run.cfg.sasrec.max_len)))


def _read_test_users(run, sasrec, read, k: int, ordered: bool = False) -> dict:
    """{condition: {protocol: {metric: per-user array}}} of a reader over ``k`` test users
    drawn by the seed (the same draw for every reader), NaN for the others; ``ordered``: the
    sampled candidates in SASRec's order."""
    from metamodal.seq.run import conditions

    pick = np.sort(np.random.default_rng([run.seed, 7]).choice(len(run.users), k, replace=False))
    users, negs = run.users[pick], run.negatives[pick]
    first = _first_stage(sasrec, [run.seqs.history("test", int(u)) for u in users], run.cfg.sasrec.max_len)
    got: dict = {}
    for c in conditions(run.content[2]):
        part = evaluate_reader(read, run.seqs, users, negs, c, first, run.seed, ordered)
        got[c] = {p: {m: _spread(v, pick, len(run.users)) for m, v in ms.items()} for p, ms in part.items()}
    return got


def evaluate_keyword_overlap(run, sasrec) -> tuple[dict, dict]:
    """The control reads every test user: it has no model to run."""
    _, make = _reader_setup(run, sasrec)

    def read(users, hists, cands, hidden):
        return overlap_scores(make, users, hists, cands, hidden, run.seed)

    return _read_test_users(run, sasrec, read, len(run.users)), {"eval_users": len(run.users)}


def evaluate_keyword_llm(run, sasrec) -> tuple[dict, dict]:
    """({condition: {protocol: {metric: per-user array}}}, training facts)."""
    from metamodal.agent.menu_net import load_menu_policy
    from metamodal.agent.menu_policy import train_menu_policy

    cfg = run.cfg
    n = 1 + cfg.n_negatives
    if n > len(LETTERS) and cfg.llm.mode == "listwise":
        raise ValueError(f"keyword_llm reads at most {len(LETTERS)} candidates; n_negatives is {cfg.n_negatives}")
    kw, make = _reader_setup(run, sasrec)
    prompts, rewards, sizes, by_task = _multi_task_rows(run, sasrec, make, kw, n)
    pcfg = cfg.llm.policy.model_copy(update={"seed": run.seed, "answer": ANSWER})
    summary = train_menu_policy(prompts, rewards, sizes, rewards, run.dir / "keyword_llm", pcfg, reward_scale=1.0,
                                record={"mode": cfg.llm.mode})  # fmt: skip
    net = load_menu_policy(summary)
    k = len(run.users) if cfg.llm.eval_users is None else min(cfg.llm.eval_users, len(run.users))
    got = _read_test_users(run, sasrec, llm_reader(net, make, cfg.llm.mode), k, _in_sasrec_order(run))
    facts = {"eval_users": int(k), "mode": cfg.llm.mode, "train_rows": len(prompts), "train_seconds": summary["seconds"],
             "rows_by_task": by_task, "candidate_order": cfg.llm.candidate_order,
             "bc_loss_first": summary["bc_loss_first"], "bc_loss_last": summary["bc_loss_last"]}  # fmt: skip
    return got, facts


def _in_sasrec_order(run) -> bool:
    return run.cfg.llm.candidate_order == "first_stage"


def _multi_task_rows(run, sasrec, make: PromptMaker, kw: ItemKeywords, n: int):
    """Next-item rows (in SASRec's order when the candidates are read in it), then
    keyword-reconstruction rows (the menu trainer shuffles its rows), and how many of each."""
    cfg = run.cfg.llm
    first = (lambda hists: _first_stage(sasrec, hists, run.cfg.sasrec.max_len)) if _in_sasrec_order(run) else None
    parts = {"next_item": training_rows(make, cfg.train_rows, n, cfg.hide_p, run.seed, cfg.mode, first)}
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
