"""An MMA run: ``config.json`` (the run's ``MMAConfig``), ``zoo/<model>/`` (``ZooRun``s: the
retriever and the baselines), ``seed<k>/`` (``router.json``, ``rankings.json``, the policy's
adapter and ``result.json``) and ``report.json``/``report.md`` with their plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from metamodal.rundir.base import Claim, LayoutError, RunDir, write_json
from metamodal.rundir.zoo import ZooRun


def _per_seed(conf: dict) -> dict:
    """What a seed's result depends on: everything but how many seeds there are, so that a
    3-seed run extends to 5 (or reports its first 3) without training anything twice."""
    return {k: v for k, v in conf.items() if k != "seeds"}


class MMARun(RunDir):
    KIND: ClassVar[str] = "mma"
    STALE: ClassVar[list[str]] = []  # seeds are rerun in place; the zoo runs guard themselves

    def claim_config(self, conf: dict) -> Claim:
        """A changed configuration retrains every seed in place (``mma run`` never refuses);
        a different seed count alone is the same run."""
        return self.claim(conf, overwrite=True, same=lambda a, b: _per_seed(a) == _per_seed(b))

    def holds(self, conf: dict) -> bool:
        """Whether this directory is an MMA run of ``conf`` (up to the seed count)."""
        try:
            return _per_seed(self.config()) == _per_seed(conf)
        except (LayoutError, FileNotFoundError):
            return False

    def zoo(self, model: str) -> ZooRun:
        return ZooRun(self.path / "zoo" / model)

    def retriever(self) -> ZooRun:
        return self.zoo(self.config()["retriever"])

    def seed_dir(self, seed: int) -> Path:
        return self.path / f"seed{seed}"

    def seed_result(self, seed: int) -> dict[str, Any] | None:
        f = self.seed_dir(seed) / "result.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def write_seed_result(self, seed: int, res: dict[str, Any]) -> None:
        write_json(self.seed_dir(seed) / "result.json", res, default=float)

    @property
    def report_file(self) -> Path:
        return self.path / "report.json"
