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
from metamodal.rundir import LayoutError, MMARun
from metamodal.storage import sync_down, sync_up
from metamodal.train.artifacts import TrainedRun, load_run


def train_zoo(dataset: str, out: Path, cfg: MMAConfig) -> dict[str, TrainedRun]:
    """The retriever and the baselines, trained with the same cold items; a finished run with
    the same configuration is reused."""
    from metamodal.train.runner import run_side_by_side

    overrides = [f"missing.cold_item_frac={cfg.cold_item_frac}", f"split.method={cfg.split}",
                 *([f"train.epochs={cfg.zoo_epochs}"] if cfg.zoo_epochs else []), *cfg.zoo_overrides]  # fmt: skip
    paths, todo = {}, {}
    for name in dict.fromkeys([cfg.retriever, *cfg.baselines]):
        zoo = MMARun(out).zoo(name)
        sync_down(zoo.path)
        try:
            done = zoo.finished()
        except LayoutError:  # an older layout: retrained in place, as a changed config would be
            done = False
        log(f"zoo {name}: reusing {zoo.path}" if done else f"zoo {name}: training")
        paths[name] = zoo.path
        if not done:
            todo[name] = zoo.path
    if todo:
        run_side_by_side(todo, dataset, overrides, cfg.zoo_concurrency)
    return {name: load_run(p) for name, p in paths.items()}


class FirstStageScores:
    """First-stage scores from the retriever's vectors: a warm user's own vector, or the mean of
    a (short) history's item vectors."""

    def __init__(self, run: TrainedRun) -> None:
        net = run.build()
        self.users, self.items = net.numpy_vectors()

    def user_scores(self, u: int) -> np.ndarray:
        return self.items @ self.users[u]

    def history_scores(self, hist: np.ndarray) -> np.ndarray:
        if not len(hist):
            return np.zeros(len(self.items))
        return self.items @ self.items[hist].mean(0)


def run_mma(dataset: str, out: str | Path, cfg: MMAConfig, reevaluate: bool = False) -> dict:
    """``reevaluate``: with the same configuration, keep the trained policies and evaluate every
    seed again (after a change to evaluation or selection); otherwise finished seeds are kept."""
    from metamodal.agent.mma_report import write_report

    rd = MMARun(out)
    out = rd.path
    sync_down(out)  # finished seeds kept elsewhere are reused here
    conf = json.loads(json.dumps(cfg.model_dump()))
    if reevaluate and not rd.holds(conf):
        raise ConfigError(f"--reevaluate needs {rd.config_file} to hold this same configuration")
    same = rd.claim_config(conf) == "same"
    t0 = time.perf_counter()
    runs = train_zoo(dataset, out, cfg)
    zoo_s = time.perf_counter() - t0
    run = runs[cfg.retriever]
    retriever = FirstStageScores(run)
    store = EvidenceStore.build(run.ds, graph_items=retriever.items, heads=cfg.heads)
    log(f"evidence sources: {store.sources()}; tools: {list(tools_for(store))}")
    seeds, reused = [], []
    for seed in range(cfg.seeds):
        done = rd.seed_result(seed)
        if same and done is not None and not reevaluate:  # resume at the first unfinished seed
            log(f"seed {seed}: reusing {rd.seed_dir(seed)} (same configuration)")
            seeds.append(done)
            reused.append(seed)
            continue
        seeds.append(run_seed(seed, cfg, runs, store, retriever, out, reuse_policy=same))
        rd.write_seed_result(seed, seeds[-1])
        sync_up(out)
    wall = time.perf_counter() - t0
    timing = {"zoo_seconds": zoo_s, "wall_seconds": wall, "reused_seeds": reused,
              "reevaluated": reevaluate}  # fmt: skip
    report = write_report(out, dataset, cfg, seeds, timing)
    sync_up(out)
    return report
