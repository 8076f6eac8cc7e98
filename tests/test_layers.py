"""The package's imports run one way: config and progress → storage → raylogs, rundir and runlog → harness,
data and llm → models (extract and retrieval beside them) → eval → train → agent (tuning and
monitor beside it) → serving and seq → workflows → cli.
Every import is walked, top-level and inside functions alike; an edge to a higher layer, or
sideways between two packages of one layer, fails naming the file and the line."""

from __future__ import annotations

import ast
from pathlib import Path

import metamodal

LAYERS = {
    "config": 0, "progress": 0,
    "storage": 1,
    "raylogs": 2, "rundir": 2, "runlog": 2,
    "harness": 3, "data": 3, "llm": 3,
    "models": 4, "extract": 4, "retrieval": 4,
    "eval": 5,
    "train": 6,
    "agent": 7, "tuning": 7, "monitor": 7,
    "serving": 8, "seq": 8,
    "workflows": 9,
    "cli": 10,
}  # fmt: skip
ROOT = Path(metamodal.__file__).parent


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    return rel[0].removesuffix(".py")


def imported_packages(tree: ast.AST) -> list[tuple[str, int]]:
    """(metamodal sub-package, line) of every import in the module, at any depth."""
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "metamodal":  # from metamodal import data
                names = [f"metamodal.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out += [(n.split(".")[1], node.lineno) for n in names
                if n.startswith("metamodal.") and len(n.split(".")) > 1]  # fmt: skip
    return out


def wrong_edges() -> list[str]:
    bad = []
    for f in sorted(ROOT.rglob("*.py")):
        src = package_of(f)
        if src == "__init__":
            continue
        for dst, line in imported_packages(ast.parse(f.read_text())):
            if dst == src:
                continue
            if src not in LAYERS or dst not in LAYERS:
                bad.append(f"{f.relative_to(ROOT)}:{line}: {src} -> {dst} (a package with no layer)")
            elif LAYERS[dst] >= LAYERS[src]:
                bad.append(f"{f.relative_to(ROOT)}:{line}: {src} (layer {LAYERS[src]}) imports "
                           f"{dst} (layer {LAYERS[dst]})")  # fmt: skip
    return bad


def test_every_import_runs_down_the_layers() -> None:
    assert wrong_edges() == []


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check would catch an upward import hidden in a function body."""
    tree = ast.parse("def f():\n    from metamodal.serving.config import ServeConfig\n")
    assert imported_packages(tree) == [("serving", 2)]
    assert set(LAYERS) >= {package_of(f) for f in ROOT.rglob("*.py")} - {"__init__"}
