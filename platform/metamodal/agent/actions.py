"""The policy's text interface: the prompt it reads, the action grammar it writes, the parser
that never raises, and the reward.

Protocol (oracle-free): every tool is first asked for its status; the prompt shows what each
answered — ``unavailable``, or how many candidates it can score — and nothing else says which
modality is missing. The completion is an ordered list of calls and the fusion weights::

    CALL text
    CALL graph
    WEIGHTS text=0.6 graph=0.4

Calls past ``max_calls`` are ignored. A malformed completion falls back to equal weights over
the tools that answered, and is penalised in the reward; parsing never fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from metamodal.agent.episodes import Episode
from metamodal.agent.tools import ToolResult

SYSTEM = (
    "Rerank a user's candidates. Call useful tools, best first, then weigh them. "
    "Reply: lines 'CALL <tool>', then 'WEIGHTS <tool>=<w> ...'."
)
_CALL = re.compile(r"^\s*CALL\s+([A-Za-z_:]+)\s*$", re.M)
_WEIGHTS = re.compile(r"^\s*WEIGHTS\b(.*)$", re.M)
_PAIR = re.compile(r"([A-Za-z_:]+)\s*=\s*([0-9]*\.?[0-9]+)")


def status_line(r: ToolResult) -> str:
    if r.status == "unavailable":
        return f"- {r.name}: unavailable"
    if r.status == "no_evidence":
        return f"- {r.name}: answers, but has no evidence for this user"
    n_ok = int((r.scores == r.scores).sum()) if r.scores is not None else 0
    share = n_ok / max(1, len(r.scores))
    return f"- {r.name}: scores {'all' if share == 1 else 'most' if share >= 0.5 else 'few'}"


def history_bucket(n: int) -> str:
    return "none" if n == 0 else "1-2 items" if n <= 2 else "3-10 items" if n <= 10 else "10+ items"


def render_prompt(ep: Episode, statuses: dict[str, ToolResult]) -> str:
    """The user turn. It carries only coarse facts (task, history size, pool size) and the tool
    statuses, so episodes with the same evidence profile share a prompt — and a cached answer."""
    lines = [
        f"Task: {ep.task.replace('_', ' ')}; history: {history_bucket(len(ep.history))}; "
        f"candidates: {len(ep.pool)}.",
        "Tools:",
        *(status_line(r) for r in statuses.values()),
    ]
    return "\n".join(lines)


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


@dataclass
class Action:
    calls: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    well_formed: bool = True
    errors: list[str] = field(default_factory=list)
    fallback: bool = False


def parse(text: str, tools: list[str], usable: list[str], max_calls: int = 4) -> Action:
    """Read a completion into calls and weights. Unknown tools, weights on tools not called,
    a missing WEIGHTS line or no call at all are errors; with no valid call the action falls
    back to equal weights over ``usable`` (the tools whose status said they can score), and so
    does one whose every call went to a tool that answered "unavailable"."""
    a = Action()
    for name in _CALL.findall(text):
        if name not in tools:
            a.errors.append(f"unknown tool '{name}'")
        elif name not in a.calls:
            a.calls.append(name)
    if len(a.calls) > max_calls:
        a.errors.append(f"{len(a.calls)} calls, at most {max_calls} run")
        a.calls = a.calls[:max_calls]
    found = _WEIGHTS.findall(text)
    if found:
        for name, w in _PAIR.findall(found[-1]):
            if name in a.calls:
                a.weights[name] = float(w)
            else:
                a.errors.append(f"weight for '{name}', which was not called")
    elif a.calls:
        a.errors.append("no WEIGHTS line")
    if not a.calls:
        a.errors.append("no valid CALL")
        a.calls, a.fallback = list(usable), True
    elif usable and not set(a.calls) & set(usable):
        # every call answered "unavailable": nothing to fuse, so act as if none were made
        a.errors.append("no called tool can score")
        a.calls, a.weights, a.fallback = list(usable), {}, True
    if not any(w > 0 for w in a.weights.values()):
        a.weights = {t: 1.0 for t in a.calls}
    a.well_formed = not a.errors
    return a


def render_action(calls: list[str], weights: dict[str, float]) -> str:
    """The completion that encodes an action (behaviour-cloning targets)."""
    lines = [f"CALL {t}" for t in calls]
    lines.append("WEIGHTS " + " ".join(f"{t}={weights[t]:.2f}" for t in calls))
    return "\n".join(lines)


@dataclass
class RewardConfig:
    call_cost: float = 0.01  # per call (unavailable ones too: probing is not free)
    format_bonus: float = 0.05
    format_penalty: float = 0.2  # malformed, or no tool called: the collapse to guard against


def reward(ndcg: float, action: Action, cfg: RewardConfig | None = None) -> float:
    cfg = cfg or RewardConfig()
    r = ndcg - cfg.call_cost * (0 if action.fallback else len(action.calls))
    return r + (cfg.format_bonus if action.well_formed else -cfg.format_penalty)
