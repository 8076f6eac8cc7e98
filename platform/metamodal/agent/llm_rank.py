"""``llm_rank``: the policy LM reads the observed keyword evidence — the history's keyword
profile and each candidate's keyword summary, from the text where text is observed, else from
the image (its visual keywords: an ImageNet-pretrained encoder's top classes, written by
extraction) — and scores the candidates from its next-token logits. Routing alone cannot help
when one modality is left; reading that modality better can.

Two modes (``mode`` in the training summary, so Serve loads what was trained):
- ``pointwise`` (the default): one prompt per candidate — the history's profile and that
  candidate's keywords — answered ``A`` (match) or ``B`` (no match); the score is log p(A).
  Trained on the target and one drawn negative per episode. A pool's prompts differ only in
  their last line, so a read-out runs the shared part once for the whole pool.
- ``listwise``: every candidate as a lettered line of one prompt, scored by the log-probability
  of its letter in one forward pass (LlamaRec's verbalizer). Trained on thousands of episodes on
  a GPU it learnt only a preference among letters (``benchmarks/llm_rank_scale.py``); an offline
  pointwise probe on the same episodes ranked above it, hence the default. It stays for
  comparison.

It is a tool like every other: it reads the episode's ``Evidence`` view (keywords of a masked
group raise, so the tool answers ``unavailable`` and nothing masked reaches a prompt), its
scores enter the statistics and the route menus, and the router weighs it per episode. Listwise
pools longer than the letter set are read in windows, each scored on its own forward pass.

Training reuses the menu router's trainer (``menu_policy``) with the answer letters as the menu:
a warm start on the right letter (SFT), then the exact expected-reward stage with a KL to it
(reward 1 for the right letter, 0 otherwise).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from metamodal.agent.episodes import Episode
from metamodal.agent.evidence import Evidence, EvidenceStore
from metamodal.agent.menu_net import LETTERS, SHARED, MenuPolicyConfig
from metamodal.agent.tools import Tool, ToolResult, result_of, unavailable

NAME = "llm_rank"
ANSWER = "\nbest:"  # listwise
POINT_ANSWER = "\nanswer:"
POINT_LETTERS = 2  # A: match, B: no match
PROFILE_WORDS = 12  # the history's most frequent keywords
ITEM_WORDS = 4  # keywords shown per candidate
WINDOW = 20  # candidates per forward pass


def profile_of(history_kw: list[list[str]]) -> list[str]:
    return [w for w, _ in Counter(w for kw in history_kw for w in kw).most_common(PROFILE_WORDS)]


KEYWORD_GROUPS = ("text", "image")  # where keywords come from, in order of preference


def keyword_group(ev: Evidence) -> str | None:
    """The first observed group that has keywords (text, else the image's visual keywords)."""
    for g in KEYWORD_GROUPS:
        if ev.observed(g) and ev.keywords(g) is not None:
            return g
    return None


def listwise_prompt(profile: list[str], candidates: list[list[str]], group: str = "text") -> str:
    """``liked (group): …`` then one line per candidate letter (``-``: no keywords)."""
    lines = [f"liked ({group}): " + " ".join(profile)]
    letters = LETTERS[: len(candidates)]
    lines += [
        f"{c}: {' '.join(kw[:ITEM_WORDS]) or '-'}"
        for c, kw in zip(letters, candidates, strict=True)
    ]
    return "\n".join(lines)


def pointwise_prompt(profile: list[str], item: list[str], group: str = "text") -> str:
    """The answer key and the profile first, the candidate last: an episode's prompts share
    everything before ``SHARED``, which a read-out runs once for the whole pool."""
    return (f"A: match\nB: no match\nliked ({group}): " + " ".join(profile) + f"\nitem:{SHARED}"
            f" {' '.join(item[:ITEM_WORDS]) or '-'}")  # fmt: skip


def window_sizes(n: int) -> list[int]:
    """How many candidates each of a pool's windows holds (one forward pass each)."""
    return [min(WINDOW, n - s) for s in range(0, n, WINDOW)]


def episode_prompts(ev: Evidence, mode: str = "pointwise") -> tuple[str, list[str], list[int]] | None:
    """(the keyword group read, the episode's prompts, each prompt's answer letters):
    pointwise one prompt per candidate, listwise one per window of candidates; None when no
    observed group has keywords or no history item has any (no evidence)."""
    group = keyword_group(ev)
    if group is None:
        return None
    kw = ev.keywords(group)  # observed: keyword_group checked (a masked group would raise)
    ep = ev.ep
    profile = profile_of([kw[i] for i in ep.history])
    if not profile:
        return None
    cands = [kw[i] for i in ep.pool]
    if mode == "pointwise":
        return group, [pointwise_prompt(profile, c, group) for c in cands], [POINT_LETTERS] * len(cands)
    sizes = window_sizes(len(cands))
    return group, [listwise_prompt(profile, cands[s : s + WINDOW], group)
                   for s in range(0, len(cands), WINDOW)], sizes  # fmt: skip


def mode_of(summary: dict) -> str:
    return summary.get("mode", "listwise")  # runs trained before the modes were listwise


class LLMRanker:
    """A trained ``llm_rank`` scorer in the mode it was trained in: a candidate's log p(match)
    (pointwise) or its log-probability of being the best of its window (listwise)."""

    def __init__(self, summary: dict) -> None:
        from metamodal.agent.menu_net import load_menu_policy

        self.summary = summary
        self.mode = mode_of(summary)
        self.net = load_menu_policy(summary)
        if torch.cuda.is_available():
            self.net.net.to("cuda")

    def scores(self, prompts: list[str], sizes: list[int]) -> np.ndarray:
        p = self.net.probs(prompts, sizes, what="llm_rank")
        if self.mode == "pointwise":
            return np.log(p[:, 0] + 1e-12)
        return np.concatenate([np.log(p[r, :k] + 1e-12) for r, k in enumerate(sizes)])


def llm_rank_tool(ranker: LLMRanker) -> Tool:
    """Candidates without text are unscored (NaN), as for every content tool."""

    def run(ev: Evidence) -> ToolResult:
        if keyword_group(ev) is None:
            return unavailable(NAME)
        got = episode_prompts(ev, ranker.mode)
        if got is None:
            return result_of(NAME, None, " (no history item has keywords)")
        group, prompts, sizes = got
        s = ranker.scores(prompts, sizes)
        kw = ev.keywords(group)
        s[[not kw[i] for i in ev.ep.pool]] = np.nan
        return result_of(NAME, s)

    return run


def training_rows(store: EvidenceStore, episodes: list[Episode], limit: int, seed: int,
                  mode: str = "pointwise"):  # fmt: skip
    """(prompts, one-hot rewards over the answer letters, sizes) from at most ``limit``
    target-positive episodes with observed keywords whose target has them, drawn with ``seed``:
    listwise one row per episode (the target's letter), pointwise two — the target's prompt
    (A) and a drawn negative's that has keywords (B)."""
    eligible = []
    for ep in episodes:
        if ep.pool_kind != "target_positive" or (mode == "listwise" and len(ep.pool) > WINDOW):
            continue
        got = episode_prompts(store.view(ep), mode)
        t = int(np.flatnonzero(ep.labels)[0])
        if got is not None and store.keywords[got[0]][int(ep.pool[t])]:
            eligible.append((ep, got, t))
    rng = np.random.default_rng([seed, 5])
    keep = np.sort(rng.permutation(len(eligible))[:limit])
    if not len(keep):
        raise ValueError("llm_rank: no fit episode with observed keywords and a target that has them")
    rows: list[tuple[str, int, int]] = []  # (prompt, right letter, letters)
    for i in keep:
        ep, (group, prompts, sizes), t = eligible[i]
        if mode == "listwise":
            rows.append((prompts[0], t, len(ep.pool)))
            continue
        kw = store.keywords[group]
        negs = [j for j in range(len(ep.pool)) if j != t and kw[int(ep.pool[j])]]
        rows.append((prompts[t], 0, POINT_LETTERS))
        if negs:
            rows.append((prompts[int(rng.choice(negs))], 1, POINT_LETTERS))
    width = WINDOW if mode == "listwise" else POINT_LETTERS
    r = np.zeros((len(rows), width), np.float32)
    r[np.arange(len(rows)), [c for _, c, _ in rows]] = 1.0
    return [p for p, _, _ in rows], r, np.array([n for _, _, n in rows])


def train_llm_rank(store: EvidenceStore, episodes: list[Episode], cfg: MenuPolicyConfig,
                   out: Path, limit: int, reuse: bool, mode: str = "pointwise") -> LLMRanker:  # fmt: skip
    """SFT on the right letter, then the expected-reward stage (``menu_policy``)."""
    import json

    from metamodal.agent.menu_policy import train_menu_policy

    if reuse and (out / "summary.json").is_file() and (out / "adapter").is_dir():
        summary = json.loads((out / "summary.json").read_text())
        if mode_of(summary) == mode:
            return LLMRanker(summary)
    prompts, rewards, sizes = training_rows(store, episodes, limit, cfg.seed, mode)
    pcfg = cfg.model_copy(update={"answer": ANSWER if mode == "listwise" else POINT_ANSWER})
    return LLMRanker(train_menu_policy(prompts, rewards, sizes, rewards, out, pcfg, reward_scale=1.0,
                                       record={"mode": mode}))  # fmt: skip
