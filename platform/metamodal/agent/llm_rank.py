"""``llm_rank``: the policy LM reads the observed keyword evidence — the history's keyword
profile and each candidate's keyword summary, from the text where text is observed, else from
the image (its visual keywords: an ImageNet-pretrained encoder's top classes, written by
extraction) — and scores the candidates listwise from its next-token logits over their letters
in one forward pass (LlamaRec's verbalizer). Routing alone cannot help when one modality is
left; reading that modality better can.

It is a tool like every other: it reads the episode's ``Evidence`` view (keywords of a masked
group raise, so the tool answers ``unavailable`` and nothing masked reaches a prompt), its
scores enter the statistics and the route menus, and the router weighs it per episode. Pools
longer than the letter set are read in windows, each scored on its own forward pass.

Training reuses the menu router's trainer (``menu_policy``) with the candidates as the menu: a
warm start on the target's letter (SFT), then the exact expected-reward stage with a KL to it
(reward 1 for the target, 0 otherwise: the expected reward is the target's top-1 probability).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from metamodal.agent.episodes import Episode
from metamodal.agent.evidence import Evidence, EvidenceStore
from metamodal.agent.menu_net import LETTERS, MenuPolicyConfig
from metamodal.agent.tools import Tool, ToolResult, result_of, unavailable

NAME = "llm_rank"
ANSWER = "\nbest:"
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


def window_sizes(n: int) -> list[int]:
    """How many candidates each of a pool's windows holds (one forward pass each)."""
    return [min(WINDOW, n - s) for s in range(0, n, WINDOW)]


def episode_prompts(ev: Evidence) -> tuple[str, list[str]] | None:
    """(the keyword group read, the episode's prompts: one per window of candidates); None
    when no observed group has keywords or no history item has any (no evidence)."""
    group = keyword_group(ev)
    if group is None:
        return None
    kw = ev.keywords(group)  # observed: keyword_group checked (a masked group would raise)
    ep = ev.ep
    profile = profile_of([kw[i] for i in ep.history])
    if not profile:
        return None
    cands = [kw[i] for i in ep.pool]
    return group, [listwise_prompt(profile, cands[s : s + WINDOW], group)
                   for s in range(0, len(cands), WINDOW)]  # fmt: skip


class ListwiseRanker:
    """A trained listwise scorer: each candidate's log-probability of being the best of its
    window."""

    def __init__(self, summary: dict) -> None:
        from metamodal.agent.menu_net import load_menu_policy

        self.summary = summary
        self.net = load_menu_policy(summary)
        if torch.cuda.is_available():
            self.net.net.to("cuda")

    def scores(self, prompts: list[str], n: int) -> np.ndarray:
        sizes = window_sizes(n)
        p = self.net.probs(prompts, sizes)
        return np.concatenate([np.log(p[r, :k] + 1e-12) for r, k in enumerate(sizes)])


def llm_rank_tool(ranker: ListwiseRanker) -> Tool:
    """Candidates without text are unscored (NaN), as for every content tool."""

    def run(ev: Evidence) -> ToolResult:
        if keyword_group(ev) is None:
            return unavailable(NAME)
        got = episode_prompts(ev)
        if got is None:
            return result_of(NAME, None, " (no history item has keywords)")
        group, prompts = got
        s = ranker.scores(prompts, len(ev.ep.pool))
        kw = ev.keywords(group)
        s[[not kw[i] for i in ev.ep.pool]] = np.nan
        return result_of(NAME, s)

    return run


def training_rows(store: EvidenceStore, episodes: list[Episode], limit: int, seed: int):
    """(prompts, one-hot rewards, sizes) of target-positive episodes with observed keywords
    whose target has them, at most ``limit``, drawn with ``seed``."""
    rows = []
    for ep in episodes:
        if ep.pool_kind != "target_positive" or len(ep.pool) > WINDOW:
            continue
        got = episode_prompts(store.view(ep))
        t = int(np.flatnonzero(ep.labels)[0])
        if got is None or not store.keywords[got[0]][int(ep.pool[t])]:
            continue
        rows.append((got[1][0], t, len(ep.pool)))
    keep = np.sort(np.random.default_rng([seed, 5]).permutation(len(rows))[:limit])
    if not len(keep):
        raise ValueError("llm_rank: no fit episode with observed keywords and a target that has them")
    r = np.zeros((len(keep), WINDOW), np.float32)
    for j, i in enumerate(keep):
        r[j, rows[i][1]] = 1.0
    return [rows[i][0] for i in keep], r, np.array([rows[i][2] for i in keep])


def train_llm_rank(store: EvidenceStore, episodes: list[Episode], cfg: MenuPolicyConfig,
                   out: Path, limit: int, reuse: bool) -> ListwiseRanker:  # fmt: skip
    """SFT on the target's letter, then the expected-reward stage (``menu_policy``)."""
    import json

    from metamodal.agent.menu_policy import train_menu_policy

    if reuse and (out / "summary.json").is_file() and (out / "adapter").is_dir():
        return ListwiseRanker(json.loads((out / "summary.json").read_text()))
    prompts, rewards, sizes = training_rows(store, episodes, limit, cfg.seed)
    pcfg = cfg.model_copy(update={"answer": ANSWER})
    summary = train_menu_policy(prompts, rewards, sizes, rewards, out, pcfg, reward_scale=1.0)
    return ListwiseRanker(summary)
