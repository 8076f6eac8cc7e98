"""A training's metrics log (``RunLog``, its driver-side writer, and the tolerant reader) and
``Progress``, the readable line a long pass prints.

Ray Train runs it in its controller, which Ray places on the driver's node: the one node that
holds the run directory. Rank 0 hands over its rows (``Worker.log``), the epoch it resumed from
(``Worker.start_log``) and its placement group (``Worker.note_worker_group``) with each report;
this writes them there and, with storage configured, pushes the log so that a run resumed on
another node finds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.train import UserCallback

WORKER_GROUP_NOTE = ".worker_group_pg"  # the placement group a sweep releases if Tune kills the run
FOR_DRIVER = "_metamodal_log"  # the metrics key that carries rank 0's rows to ``RunLog``


class RunLog(UserCallback):
    def __init__(self, out: str, metrics_file: str, storage: Any = None) -> None:
        self.out, self.metrics_file, self.storage = out, metrics_file, storage

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        carried = [m.pop(FOR_DRIVER, None) for m in metrics]  # out of Tune's and the result's view
        if carried and carried[0]:
            self.write(carried[0])

    def write(self, carried: dict[str, Any]) -> None:
        """Apply what rank 0 carried: rewind, append its rows, note its worker group."""
        out = Path(self.out)
        log = out / self.metrics_file
        out.mkdir(parents=True, exist_ok=True)
        if carried.get("rewind") is not None:
            epoch = carried["rewind"]
            if trim_log(log, epoch) and epoch == 0:
                print("restarted from epoch 1: no checkpoint was registered before the failure",
                      flush=True)  # fmt: skip
        if carried.get("rows"):
            with open(log, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in carried["rows"]))
        names = [self.metrics_file]
        if carried.get("worker_group"):
            (out / WORKER_GROUP_NOTE).write_text(carried["worker_group"])
            names.append(WORKER_GROUP_NOTE)
        if self.storage is not None:
            self.storage.push(out, names)


def _row_epoch(line: str) -> float:
    """A metrics row's epoch; a line a killed process left half-written counts as past any."""
    try:
        return json.loads(line)["epoch"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


def read_metrics(log: Path) -> list[dict]:
    """A run's metrics rows. A line a killed process left half-written is dropped, and said:
    the log is appended to as training goes, so its last line can be torn."""
    lines = log.read_text().splitlines() if log.is_file() else []
    rows, torn = [], 0
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    if torn:
        print(f"{log}: {torn} half-written line(s) dropped", flush=True)
    return rows


def logged_through(log: Path) -> int:
    """The last epoch the log holds a whole row for (0: none yet)."""
    lines = log.read_text().splitlines() if log.is_file() else []
    return max((int(e) for e in map(_row_epoch, lines) if e != float("inf")), default=0)


def trim_log(log: Path, epoch: int) -> int:
    """Keep the rows up to ``epoch`` (atomically); how many were dropped."""
    lines = log.read_text().splitlines() if log.is_file() else []
    rows = [r for r in lines if _row_epoch(r) <= epoch]
    if len(rows) != len(lines):
        tmp = log.with_suffix(".tmp")
        tmp.write_text("".join(r + "\n" for r in rows))
        tmp.replace(log)
    return len(lines) - len(rows)
