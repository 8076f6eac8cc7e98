"""Tools built outside the agent, passed by path: ``mma run``'s ``tools`` setting names
factories as ``"package.module:function"``. A layer above the agent (``seq``'s keyword-RAG LLM)
adds its tool this way without the agent importing it, as OpenRLHF takes its reward functions.

A factory takes a ``ToolContext`` and returns a ``ToolBuild``. With ``fit`` episodes it trains
what it needs under ``out``; with ``fit=None`` it loads what ``out`` holds — that is how Serve
and a resumed seed rebuild the very tool the run measured (``router.json`` names the factories).
Its tools read episodes through the ``Evidence`` view like every other tool, so masking holds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from metamodal.agent.episodes import Episode
from metamodal.agent.evidence import EvidenceStore
from metamodal.agent.menu_net import MenuPolicyConfig
from metamodal.agent.tools import Tool

if TYPE_CHECKING:
    from metamodal.train.artifacts import TrainedRun


@dataclass
class ToolContext:
    store: EvidenceStore
    run: TrainedRun  # the retriever's run: its dataset, split (training part only) and vectors
    policy: MenuPolicyConfig | None  # the seed's LM settings (seed included); None: load only
    out: Path  # the factory's own directory under the seed
    fit: list[Episode] | None  # training episodes; None: load what ``out`` holds
    rows: int = 600  # at most this many training rows
    reuse: bool = False  # a resumed seed: load what ``out`` holds if it is there


@dataclass
class ToolBuild:
    tools: dict[str, Tool]
    summary: dict = field(default_factory=dict)  # recorded in router.json and report.json


Factory = Callable[[ToolContext], ToolBuild]


def load_factory(path: str) -> Factory:
    """``"package.module:function"`` → the function; an error names the setting and the path."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"tools: {path!r} is not 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"tools: cannot load {path!r}: {e}") from e
    if not callable(fn):
        raise ValueError(f"tools: {path!r} is not callable")
    return fn


def slug(path: str) -> str:
    """The factory's directory name under a seed: its function's name."""
    return path.rpartition(":")[2]


def build_tools(paths: list[str], ctx_for: Callable[[str], ToolContext]) -> tuple[dict[str, Tool], dict[str, dict]]:
    """Every factory's tools (a name taken twice is an error), and per path the names it added
    and its summary (what ``router.json`` records)."""
    tools: dict[str, Tool] = {}
    record: dict[str, dict] = {}
    for path in paths:
        built = load_factory(path)(ctx_for(path))
        clash = sorted(set(built.tools) & set(tools))
        if clash:
            raise ValueError(f"tools: {path!r} adds {clash}, which another factory already added")
        tools.update(built.tools)
        record[path] = {"tools": sorted(built.tools), "summary": built.summary}
    return tools, record
