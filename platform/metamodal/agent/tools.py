"""The agent's evidence tools, one registry. A tool reads an episode's ``Evidence`` view and
returns per-candidate scores plus the one-line summary the policy reads. A tool whose evidence
the episode does not observe answers ``unavailable`` (it catches ``MaskedModality``; it never
sees the data). Candidates a tool cannot score (the item lacks the modality, a cold item for the
graph) get NaN, which fusion treats as neutral; the summary counts them.

Tools are built per dataset (``tools_for``): one similarity tool per content group (named after
it: ``text``, ``image``, ``audio``), the
``graph`` tool when a graph model is given, ``fusion`` (a trained fusion model's masked scores,
``model_tool``) when the caller adds it, ``keyword`` when there is raw text, ``cross_modal``
when an aligned image/text pair was extracted. ``clarify`` (MMA-Interactive) is the one tool
that reads held-out evidence — a simulated user answering from a masked modality — and is kept
out of MMA-Auto and every baseline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metamodal.agent.evidence import Evidence, EvidenceStore, MaskedModality, mean_present
from metamodal.data.missing import GRAPH


@dataclass
class ToolResult:
    name: str
    status: str  # "ok" | "unavailable" | "no_evidence"
    scores: np.ndarray | None  # [pool], NaN where the tool cannot score a candidate
    summary: str

    @property
    def usable(self) -> bool:
        return self.status == "ok"


Tool = Callable[[Evidence], ToolResult]


def _profile_scores(
    x: np.ndarray, present: np.ndarray, history: np.ndarray, pool: np.ndarray
) -> np.ndarray | None:
    """Cosine of each candidate with the mean of the history's present rows; None without any."""
    h = history[present[history]]
    if not len(h):
        return None
    prof = x[h].mean(0)
    prof /= max(float(np.linalg.norm(prof)), 1e-12)
    s = (x[pool] @ prof).astype(np.float64)
    s[~present[pool]] = np.nan
    return s


def _summarise(name: str, s: np.ndarray, note: str = "") -> str:
    ok = ~np.isnan(s)
    if not ok.any():
        return f"{name}: no candidate could be scored{note}"
    top = np.argsort(-np.where(ok, s, -np.inf), kind="stable")[:3]
    spread = float(np.nanstd(s))
    tops = " ".join(f"c{int(t)}" for t in top)
    return f"{name}: scored {int(ok.sum())}/{len(s)}, top {tops}, spread {spread:.2f}{note}"


def result_of(name: str, s: np.ndarray | None, note: str = "") -> ToolResult:
    if s is None or np.isnan(s).all():
        return ToolResult(name, "no_evidence", None, f"{name}: no usable evidence{note}")
    return ToolResult(name, "ok", s, _summarise(name, s, note))


def unavailable(name: str) -> ToolResult:
    return ToolResult(name, "unavailable", None, f"{name}: unavailable")


def similarity_tool(group: str) -> Tool:
    """Named after its group (``text``, ``image``, ``audio``): short names keep prompts and
    completions short, which is most of a CPU policy step's cost."""
    name = group

    def run(ev: Evidence) -> ToolResult:
        try:
            mods = ev.features(group)
        except MaskedModality:
            return unavailable(name)
        per = [_profile_scores(x, m, ev.ep.history, ev.ep.pool) for _, x, m in mods]
        per = [s for s in per if s is not None]
        if not per:
            return result_of(name, None, " (no history item has it)")
        return result_of(name, mean_present(per))

    return run


def graph_tool(ev: Evidence) -> ToolResult:
    """Item–item collaborative similarity from the graph model: the history's mean item vector
    against each candidate's; candidates the model never saw interacted (cold) are unscored."""
    try:
        items = ev.graph()
    except MaskedModality:
        return unavailable("graph")
    if items is None or not len(ev.ep.history):
        return result_of("graph", None)
    prof = items[ev.ep.history].mean(0)
    s = (items[ev.ep.pool] @ prof).astype(np.float64)
    s[ev.ep.cold] = np.nan
    cold = int(ev.ep.cold.sum())
    return result_of("graph", s, f", {cold} cold" if cold else "")


def keyword_tool(ev: Evidence) -> ToolResult:
    """Overlap of each candidate's keywords with the history's keyword profile (weighted by how
    often a keyword recurs in the history); the summary names the profile's top keywords."""
    try:
        kw = ev.keywords("text")
    except MaskedModality:
        return unavailable("keyword")
    if kw is None:
        return unavailable("keyword")
    prof = Counter(w for i in ev.ep.history for w in kw[i])
    if not prof:
        return result_of("keyword", None)
    total = sum(prof.values())
    s = np.array([sum(prof[w] for w in kw[i]) / total if kw[i] else np.nan for i in ev.ep.pool])
    top = ", ".join(w for w, _ in prof.most_common(4))
    return result_of("keyword", s, f"; user keywords: {top}")


def cross_modal_tool(ev: Evidence) -> ToolResult:
    """Through the aligned CLIP space: the history's images against candidates' texts and the
    history's texts against candidates' images, averaged — useful exactly when one side lacks
    the modality the other has. Needs both groups observed."""
    if ev.aligned is None:
        return unavailable("cross_modal")
    img_name, txt_name = ev.aligned
    try:
        img = ev.modality(img_name, ev.group_of(img_name))
        txt = ev.modality(txt_name, ev.group_of(txt_name))
    except MaskedModality:
        return unavailable("cross_modal")
    hist, pool = ev.ep.history, ev.ep.pool
    parts = []
    for (xh, mh), (xc, mc) in ((img, txt), (txt, img)):
        h = hist[mh[hist]]
        if len(h):
            prof = xh[h].mean(0)
            s = (xc[pool] @ prof).astype(np.float64)
            s[~mc[pool]] = np.nan
            parts.append(s)
    if not parts:
        return result_of("cross_modal", None)
    return result_of("cross_modal", mean_present(parts))


def clarify_tool(store: EvidenceStore) -> Tool:
    """MMA-Interactive's clarification: the question is grounded in what survives (it names the
    observed groups); the simulated user answers from a held-out group — their own history's
    profile in that modality, which is exactly the evidence the episode lacks. An upper-bound
    diagnostic, never part of MMA-Auto."""

    def run(ev: Evidence) -> ToolResult:
        held = [g for g in store.groups if g != GRAPH and store.groups[g] and not ev.observed(g)]
        if not held:
            return result_of("clarify", None, " (nothing held out)")
        oracle = store.view(ev.ep.with_available((*ev.ep.available, *held)))
        answers = [similarity_tool(g)(oracle) for g in held]
        used = [a for a in answers if a.usable]
        if not used:
            return result_of("clarify", None)
        return result_of("clarify", mean_present([a.scores for a in used]), f" (user answered about {', '.join(held)})")

    return run


def model_tool(scorer, name: str = "fusion") -> Tool:
    """A trained zoo fusion model's scores under the episode's observed sources: the model is
    rebuilt on the masked features (and without the graph when ``graph`` is unobserved), so
    it reads exactly what the other tools may read (``MaskedRunScorer``)."""

    def run(ev: Evidence) -> ToolResult:
        if not ev.ep.available:  # nothing observed: not even the model's ID embeddings
            return unavailable(name)
        return result_of(name, np.asarray(scorer.scores(ev.ep), dtype=np.float64))

    return run


def tools_for(
    store: EvidenceStore, interactive: bool = False, extra: dict[str, Tool] | None = None
) -> dict[str, Tool]:
    """The registry for one dataset; ``extra`` adds tools built elsewhere (``model_tool``)."""
    tools: dict[str, Tool] = dict(extra or {})
    if store.graph_items is not None:
        tools["graph"] = graph_tool
    for g, names in store.groups.items():
        if g != GRAPH and names:
            tools[g] = similarity_tool(g)
    if store.keywords.get("text") is not None:
        tools["keyword"] = keyword_tool
    if store.aligned is not None:
        tools["cross_modal"] = cross_modal_tool
    if interactive:
        tools["clarify"] = clarify_tool(store)
    return tools


def run_tools(
    store: EvidenceStore, tools: dict[str, Tool], ep, names: list[str] | None = None
) -> dict[str, ToolResult]:
    ev = store.view(ep)
    return {n: tools[n](ev) for n in (names if names is not None else tools)}
