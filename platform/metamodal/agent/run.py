"""``metamodal mma run``: train (or reuse) the zoo models MMA sits behind and compares with,
then run every seed (``metamodal.agent.seed``) and write ``DIR/report.json`` (+ Markdown and
plots, ``metamodal.agent.mma_report``). A rerun with the same configuration resumes at the first
unfinished seed; ``--reevaluate`` keeps trained routers and evaluates again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from metamodal.agent.config import MMAConfig
from metamodal.agent.evidence import EvidenceStore
from metamodal.agent.seed import log, run_seed
from metamodal.agent.tools import tools_for
from metamodal.config import ConfigError
from metamodal.rundir import write_json
from metamodal.train.artifacts import TrainedRun, load_run


def train_zoo(dataset: str, out: Path, cfg: MMAConfig) -> dict[str, TrainedRun]:
    """The retriever and the baselines, trained with the same cold items; a finished run with
    the same configuration is reused."""
    from metamodal.train.runner import run_training

    runs = {}
    overrides = [f"missing.cold_item_frac={cfg.cold_item_frac}", f"split.method={cfg.split}",
                 *cfg.zoo_overrides]  # fmt: skip
    for name in dict.fromkeys([cfg.retriever, *cfg.baselines]):
        d = out / "zoo" / name
        done = (d / "results.json").is_file()
        if done:
            log(f"zoo {name}: reusing {d}")
        else:
            log(f"zoo {name}: training")
            run_training(name, dataset, d, overrides, overwrite=True)
        runs[name] = load_run(d)
    return runs


class FirstStageScores:
    """First-stage scores from the retriever's vectors: a warm user's own vector, or the mean of
    a (short) history's item vectors."""

    def __init__(self, run: TrainedRun) -> None:
        net = run.build()
        u, i = (t.detach().numpy().astype(np.float64) for t in net.vectors())
        self.users, self.items = u, i

    def user_scores(self, u: int) -> np.ndarray:
        return self.items @ self.users[u]

    def history_scores(self, hist: np.ndarray) -> np.ndarray:
        if not len(hist):
            return np.zeros(len(self.items))
        return self.items @ self.items[hist].mean(0)


def _per_seed(conf: dict) -> dict:
    """What a seed's result depends on: everything but how many seeds there are, so that a
    3-seed run extends to 5 (or reports its first 3) without training anything twice."""
    return {k: v for k, v in conf.items() if k != "seeds"}


def run_mma(dataset: str, out: str | Path, cfg: MMAConfig, reevaluate: bool = False) -> dict:
    """``reevaluate``: with the same configuration, keep the trained policies and evaluate every
    seed again (after a change to evaluation or selection); otherwise finished seeds are kept."""
    from metamodal.agent.mma_report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    conf, wanted = out / "config.json", json.loads(json.dumps(cfg.model_dump()))
    same = conf.is_file() and _per_seed(json.loads(conf.read_text())) == _per_seed(wanted)
    if reevaluate and not same:
        raise ConfigError(f"--reevaluate needs {conf} to hold this same configuration")
    write_json(conf, wanted, indent=2)
    t0 = time.perf_counter()
    runs = train_zoo(dataset, out, cfg)
    zoo_s = time.perf_counter() - t0
    run = runs[cfg.retriever]
    retriever = FirstStageScores(run)
    store = EvidenceStore.build(run.ds, graph_items=retriever.items)
    log(f"evidence sources: {store.sources()}; tools: {list(tools_for(store))}")
    seeds, reused = [], []
    for seed in range(cfg.seeds):
        done = out / f"seed{seed}" / "result.json"
        if same and done.is_file() and not reevaluate:  # resume at the first unfinished seed
            log(f"seed {seed}: reusing {done} (same configuration)")
            seeds.append(json.loads(done.read_text()))
            reused.append(seed)
            continue
        seeds.append(run_seed(seed, cfg, runs, store, retriever, out, reuse_policy=same))
        write_json(done, seeds[-1], default=float)
    wall = time.perf_counter() - t0
    timing = {"zoo_seconds": zoo_s, "wall_seconds": wall, "reused_seeds": reused,
              "reevaluated": reevaluate}  # fmt: skip
    return write_report(out, dataset, cfg, seeds, timing)
