"""A dataset's tuned values as the ``models:`` block of its config layer
(``configs/datasets/<name>.yaml``), regenerated whole from the sweeps' summaries.

The block is written from one record of every sweep (``sweeps``: model -> its ``run_tune``
summary plus the sweep's budget), never edited in place: each model's values sit under a comment
saying how they were chosen, and a second run of the same sweeps writes the same bytes. The text
above ``models:`` (the settings every model shares, with their comments) is kept as it is.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from metamodal.rundir import atomic_write
from metamodal.tuning import nested

MARKER = "models:"
HEADER = [
    "# Chosen by the platform's own Ray Tune sweeps (ASHA on validation Recall@20; test never",
    "# read): benchmarks/tune_defaults.py. Applied after models/<model>.yaml.",
]


def tuned_block(sweeps: dict[str, dict]) -> str:
    """The ``models:`` block: one entry per model, its searched keys at the best trial's values."""
    lines = [*HEADER, MARKER]
    for model in sorted(sweeps):
        s = sweeps[model]
        best = s["best"]
        values = nested({k: best[k] for k in s["searched"]})
        lines.append(
            f"  # {s['trials']} trials ({s['failed']} failed), at most {s['max_epochs']} epochs; "
            f"best {s['metric']} {best[s['metric']]:.4f}"
        )
        if s.get("overrides"):  # what the values were chosen with (e.g. which features)
            lines.append(f"  # with {' '.join(s['overrides'])}")
        body = yaml.safe_dump({model: values}, sort_keys=True, default_flow_style=False)
        lines += ["  " + line for line in body.splitlines()]
    return "\n".join(lines) + "\n"


def shared_part(text: str) -> str:
    """What precedes the generated block: the settings every model shares."""
    out = []
    for line in text.splitlines():
        if line.startswith(MARKER) or line == HEADER[0]:
            break
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n\n" if out else ""


def write_dataset_layer(path: str | Path, sweeps: dict[str, dict]) -> Path:
    """Rewrite ``path``'s tuned block from ``sweeps``; the file must still parse afterwards."""
    path = Path(path)
    text = shared_part(path.read_text()) if path.is_file() else ""
    new = text + tuned_block(sweeps)
    layer = yaml.safe_load(new)
    if not isinstance(layer, dict) or set(layer[MARKER.rstrip(":")]) != set(sweeps):
        raise ValueError(f"{path}: the regenerated layer does not parse back to {sorted(sweeps)}")
    atomic_write(path, lambda tmp: tmp.write_text(new))
    return path
